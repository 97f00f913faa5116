// IP-in-IP's native super-packet path for real: RawSocket.sendSegments over lo in a throwaway namespace, checked
// segment by segment at a second raw socket; and two vxtun agents carrying a TCP transfer of known bytes (sha256
// compared at both ends) with the path on and off, where the sender's counters must show super-packets went out.
import { type ChildProcess, execFile, execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { AgentStatus } from '../../src/control/agent';
import { fetchStatus } from '../../src/control/status-server';
import type { Lab } from '../../src/lab/topology';
import { formatIPv4 } from '../../src/wire/address';
import { withOverlay } from '../support/overlay';
import type { SegmentFacts, StreamFacts } from './speed-ipip.child';

const Test = suite('speed-ipip: native segments over raw IP-in-IP');
const ROOT = path.join(__dirname, '..', '..');
const CHILD = path.join(__dirname, 'speed-ipip.child.ts');
const CHILD_ARGS = ['-r', 'tsx/cjs', CHILD];
/** Bytes of the transfer: ~300 super-packets of 64 KB. */
const TRANSFER_BYTES = 20 * 1024 * 1024;

Test('sendSegments: each super-packet arrives as its MSS segments, headers and checksums right, payload rebuilt', async () => {
  const namespace = `vxt-sip-${process.pid}`;
  execFileSync('ip', ['netns', 'add', namespace]);
  try {
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile('ip', ['netns', 'exec', namespace, process.execPath, ...CHILD_ARGS, 'segments'], { cwd: ROOT, timeout: 20000 }, (error, out, err) =>
        error ? reject(new Error(`${error.message}\n${err}`)) : resolve(out),
      );
    });
    const facts = JSON.parse(stdout.trim().split('\n').pop()!) as SegmentFacts;
    assert.is(facts.cases.length, 5);
    for (const c of facts.cases) {
      const label = `${c.payload} B at MSS ${c.mss}`;
      assert.is(c.sent, c.expected, `${label}: sent`);
      assert.is(c.received, c.expected, `${label}: received`);
      assert.equal(c.problems, [], label);
      assert.ok(c.payloadMatches, `${label}: payload`);
    }
    assert.equal(facts.cases.map((c) => c.expected), [45, 42, 123, 1, 1]);
    assert.is(facts.notTcp, -1, 'a packet that is not TCP is refused, nothing sent');
  } finally {
    execFileSync('ip', ['netns', 'delete', namespace]);
  }
});

/** Runs a child scenario in a node; resolves with its last stdout line as JSON once it exits. */
function runIn(lab: Lab, netns: { netns: string }, args: string[], onLine?: (line: string) => void): { child: ChildProcess; done: Promise<StreamFacts> } {
  const child = lab.spawn(netns, process.execPath, [...CHILD_ARGS, ...args], { cwd: ROOT, stdio: 'pipe' });
  let out = '';
  let err = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    if (onLine) for (const line of chunk.toString().split('\n')) if (line) onLine(line);
  });
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const done = new Promise<StreamFacts>((resolve, reject) => {
    child.once('close', (code) => {
      try {
        if (code !== 0) throw new Error(`exit ${code}`);
        resolve(JSON.parse(out.trim().split('\n').pop()!) as StreamFacts);
      } catch (error) {
        reject(new Error(`${args[0]} failed (${error instanceof Error ? error.message : String(error)}): ${out} ${err}`));
      }
    });
  });
  return { child, done };
}

for (const mode of ['on', 'off'] as const) {
  Test(`agents, --ipip-segment-batch ${mode}: a ${TRANSFER_BYTES >> 20} MB TCP transfer arrives byte for byte`, async () => {
    await withOverlay(`si${mode}`, 2, { backend: 'ipip' }, async (lab, overlay) => {
      const [n1, n2] = lab.nodes;
      for (const node of lab.nodes) await overlay.startAgent(node, ['--no-ip-masq', '--ipip-segment-batch', mode]);
      await overlay.waitForRoutes(n1, 1);
      await overlay.waitForRoutes(n2, 1);
      const target = formatIPv4((await overlay.subnetOf(n2)).address);
      let listening: () => void = () => {};
      const ready = new Promise<void>((resolve) => (listening = resolve));
      const sink = runIn(lab, n2, ['tcp-sink', target, '5400'], (line) => line === 'listening' && listening());
      await Promise.race([ready, sink.done]);
      const source = runIn(lab, n1, ['tcp-source', target, '5400', String(TRANSFER_BYTES)]);
      const timer = setTimeout(() => {
        source.child.kill('SIGKILL');
        sink.child.kill('SIGKILL');
      }, 60_000);
      try {
        const [sent, received] = await Promise.all([source.done, sink.done]);
        assert.is(sent.bytes, TRANSFER_BYTES);
        assert.is(received.bytes, TRANSFER_BYTES, 'every byte arrived');
        assert.is(received.sha256, sent.sha256, 'the bytes are the ones sent');
      } finally {
        clearTimeout(timer);
      }
      // The sender read TSO super-packets from its TUN (more underlay datagrams than TUN reads), and nothing was lost.
      const status = (await fetchStatus(overlay.agents.get(n1.name)!.statusSocket)) as AgentStatus;
      const counters = status.counters as { tunIn: { packets: number }; underlayOut: { packets: number }; drops: Record<string, number> };
      assert.ok(counters.underlayOut.packets > 2 * counters.tunIn.packets, `super-packets were segmented: ${JSON.stringify(counters)}`);
      // The kernel's own IPv6 chatter (router solicitations) into a TUN is dropped as ipv6-not-supported: not ours.
      const ours = (status: AgentStatus): Record<string, number> =>
        Object.fromEntries(Object.entries((status.counters as { drops: Record<string, number> }).drops).filter(([k]) => k !== 'tun-ipv4/ipv6-not-supported'));
      const receiver = (await fetchStatus(overlay.agents.get(n2.name)!.statusSocket)) as AgentStatus;
      assert.equal(ours(status), {}, 'no drops at the sender');
      assert.equal(ours(receiver), {}, 'no drops at the receiver');
    });
  });
}

Test.run();
