// One node, one agent: a second `vxtun agent` in a node's network namespace is refused before it changes anything
// (it would take over or delete the first one's cluster route, or, for IP-in-IP, deliver every packet twice), and a
// SIGKILLed agent's node can be taken again at once.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CLI_PATH, type Overlay } from '../../src/lab/overlay';
import type { Lab, LabNode } from '../../src/lab/topology';
import { formatIPv4 } from '../../src/wire/address';
import { withOverlay } from '../support/overlay';

const OneAgent = suite('one agent per node');

/**
 * Runs a second agent in `node` with its own TUN, socket and subnet file for up to 3 s, runs `meanwhile` (traffic that
 * a running second agent would disturb), and stops it if it still runs. Returns its exit code (null: it kept running).
 */
async function secondAgent(lab: Lab, overlay: Overlay, node: LabNode, meanwhile: () => Promise<void>): Promise<{ exitCode: number | null; output: string }> {
  const args = [
    CLI_PATH, 'agent',
    '--store', overlay.storeUrl,
    '--public-ip', node.underlayIp,
    '--tun', 'vxtun1',
    '--subnet-file', join(overlay.workDir, 'second-subnet.env'),
    '--status-socket', join(overlay.workDir, 'second.sock'),
  ];
  const child = lab.spawn(node, process.execPath, args, { stdio: 'pipe' });
  let output = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let exitCode = await Promise.race([exited, new Promise<'running'>((resolve) => setTimeout(() => resolve('running'), 3000))]);
  await meanwhile();
  if (exitCode === 'running') {
    child.kill('SIGTERM');
    await exited;
    exitCode = null;
  }
  return { exitCode, output };
}

function assertRefused(overlay: Overlay, second: { exitCode: number | null; output: string }, firstPid: number | undefined): void {
  assert.ok(second.exitCode !== null, `the second agent kept running:\n${second.output}`);
  assert.is(second.exitCode, 1, second.output);
  assert.match(second.output, `another vxtun agent (pid ${firstPid}) runs on this node (network namespace); stop it first`);
  assert.not.match(second.output, /lease acquired|data plane up/, 'refused before it did anything');
  assert.not.ok(existsSync(join(overlay.workDir, 'second-subnet.env')), 'it wrote no subnet.env');
}

/** ping output, DUP! lines included (lab/ping's summary does not count duplicates). */
async function pingOutput(lab: Lab, from: LabNode, address: string): Promise<string> {
  return (await lab.exec(from, 'ping', ['-n', '-c', '5', '-i', '0.1', '-W', '1', address])).stdout;
}

OneAgent('vxlan: a second agent with another --tun is refused; the first one\'s route and traffic are untouched; after SIGKILL a new one starts at once', async () => {
  await withOverlay('1v', 2, { backend: 'vxlan' }, async (lab, overlay) => {
    const [n1, n2] = lab.nodes;
    for (const node of lab.nodes) await overlay.startAgent(node);
    await overlay.waitForRoutes(n1, 1);
    const target = formatIPv4((await overlay.subnetOf(n2)).address);
    const first = overlay.agents.get(n1.name)!;

    assertRefused(overlay, await secondAgent(lab, overlay, n1, async () => {}), first.process.pid);
    const { stdout: route } = await lab.exec(n1, 'ip', ['route', 'show', overlay.network]);
    assert.match(route, /dev vxtun0/, `the cluster route still goes into the first agent's TUN: ${route}`);
    const { stdout: links } = await lab.exec(n1, 'ip', ['-o', 'link', 'show']);
    assert.not.match(links, /vxtun1/, 'the second agent made no device');
    assert.match(await pingOutput(lab, n1, target), / 5 received/);
    assert.is(first.process.exitCode, null, 'the first agent runs on');

    await overlay.stopAgent(n1, 'SIGKILL');
    const started = Date.now();
    await overlay.startAgent(n1);
    assert.ok(Date.now() - started < 10_000);
    await overlay.waitForRoutes(n1, 1);
    assert.match(await pingOutput(lab, n1, target), / 5 received/);
  });
});

OneAgent('ipip: a second agent is refused, and pings between the nodes see no duplicates', async () => {
  await withOverlay('1i', 2, { backend: 'ipip' }, async (lab, overlay) => {
    const [n1, n2] = lab.nodes;
    for (const node of lab.nodes) await overlay.startAgent(node);
    await overlay.waitForRoutes(n1, 1);
    const target = formatIPv4((await overlay.subnetOf(n2)).address);

    // The pings run while a second agent would be running beside the first: its raw socket would deliver each reply twice.
    let out = '';
    const second = await secondAgent(lab, overlay, n1, async () => {
      out = await pingOutput(lab, n1, target);
    });
    assert.match(out, / 5 received/, out);
    assert.not.match(out, /DUP!/, out);
    assertRefused(overlay, second, overlay.agents.get(n1.name)!.process.pid);
  });
});

OneAgent.run();
