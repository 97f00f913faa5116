// What ends an agent and what does not: a lease taken by another node ends it through its normal stop, non-zero,
// with the reason in one log line; an underlay address that disappears and returns is reported, not fatal.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_PREFIX, formatLeaseAttrs, subnetKey } from '../../src/control/lease';
import type { Overlay } from '../../src/lab/overlay';
import type { LabNode } from '../../src/lab/topology';
import { parseIPv4, parseMac } from '../../src/wire/address';
import { withOverlay } from '../support/overlay';

const Lifecycle = suite('agent lifecycle');

async function waitUntil(what: string, timeoutMs: number, check: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function exitOf(overlay: Overlay, node: LabNode): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const child = overlay.agents.get(node.name)!.process;
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

Lifecycle('a lease overwritten with another node\'s PublicIP: the agent stops serving it and exits 1 with the reason', async () => {
  await withOverlay('ll', 2, { backend: 'vxlan' }, async (lab, overlay) => {
    const [n1, n2] = lab.nodes;
    for (const node of lab.nodes) await overlay.startAgent(node);
    await overlay.waitForRoutes(n1, 1);
    const subnet = await overlay.subnetOf(n1);
    const exited = exitOf(overlay, n1);
    const thief = formatLeaseAttrs({ publicIp: parseIPv4('192.0.2.99'), backendType: 'vxlan', backendData: { vni: 1, vtepMac: parseMac('0e:00:00:00:00:99') } });
    await overlay.withStore((store) => store.put(subnetKey(DEFAULT_PREFIX, subnet), thief, { ttlSeconds: 3600 }));
    const timeout = setTimeout(() => overlay.agents.get(n1.name)?.process.kill('SIGKILL'), 10_000);
    const { code, signal } = await exited;
    clearTimeout(timeout);
    assert.is(signal, null, 'the agent exited by itself');
    assert.is(code, 1);
    const log = overlay.log(n1);
    const fatal = log.split('\n').filter((line) => line.includes('the agent can no longer serve'));
    assert.is(fatal.length, 1, log);
    assert.match(fatal[0], /^level=error msg="the agent can no longer serve and stops" error=".*leased to 192\.0\.2\.99 now.*start the agent again/);
    assert.not.match(log, /^\s+at /m, 'no stack trace');
    // It stopped through its normal stop: the TUN and with it the cluster route are gone.
    const { stdout: links } = await lab.exec(n1, 'ip', ['-o', 'link', 'show']);
    assert.not.match(links, /vxtun0/);
    // The other node is untouched.
    assert.is(overlay.agents.get(n2.name)!.process.exitCode, null);
  });
});

Lifecycle('the underlay address removed and put back: said once each way, in the log and in status; the agent runs on', async () => {
  await withOverlay('lu', 1, { backend: 'vxlan' }, async (lab, overlay) => {
    const [n1] = lab.nodes;
    await overlay.startAgent(n1);
    assert.is((await overlay.status(n1)).underlay.addressPresent, true);
    const address = `${n1.underlayIp}/${lab.prefixLength}`;
    await lab.exec(n1, 'ip', ['addr', 'del', address, 'dev', 'eth0']);
    let problem: string | undefined;
    await waitUntil('status to say the underlay address is missing', 12_000, async () => {
      const underlay = (await overlay.status(n1)).underlay;
      problem = underlay.problem;
      return !underlay.addressPresent;
    });
    assert.match(problem ?? '', new RegExp(`${n1.underlayIp.replace(/\./g, '\\.')} is on no interface of this host`));
    await lab.exec(n1, 'ip', ['addr', 'add', address, 'dev', 'eth0']);
    await waitUntil('status to say the underlay address is back', 12_000, async () => (await overlay.status(n1)).underlay.addressPresent);
    const log = overlay.log(n1);
    assert.is(log.match(/is on no interface of this host/g)?.length, 1, log);
    assert.is(log.match(/the underlay address is back/g)?.length, 1, log);
    assert.is(overlay.agents.get(n1.name)!.process.exitCode, null);
  });
});

Lifecycle.run();
