// `vxtun trace` attached to a real agent: a ping's journey hop by hop, a drop with its reason, and a pcap tshark reads.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CLI_PATH, Overlay } from '../../src/lab/overlay';
import { ping } from '../../src/lab/ping';
import { createLab } from '../../src/lab/topology';
import type { Journey } from '../../src/trace/journey';
import { formatIPv4 } from '../../src/wire/address';

const Trace = suite('trace');

Trace('a ping traced on the sending node: outbound route/neighbor/FDB/encap, inbound delivery, an unroutable drop, a pcap', async () => {
  const lab = await createLab({ name: `vxt-tr${process.pid}`, nodes: 2 });
  const dir = mkdtempSync(join(tmpdir(), 'vxtun-trace-'));
  let overlay: Overlay | undefined;
  try {
    overlay = await Overlay.create(lab, { backend: 'vxlan' });
    const [n1, n2] = lab.nodes;
    for (const node of lab.nodes) await overlay.startAgent(node);
    await overlay.waitForRoutes(n1, 1);
    await overlay.waitForRoutes(n2, 1); // the reply needs n2's route back, which a loaded machine may give late
    const target = formatIPv4((await overlay.subnetOf(n2)).address);
    const pcap = join(dir, 'trace.pcap');
    const tracer = spawn(process.execPath, [CLI_PATH, 'trace', '--socket', overlay.agents.get('n1')!.statusSocket, '--proto', 'icmp', '--count', '3', '--json', '--pcap', pcap], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    tracer.stdout.on('data', (chunk) => (out += chunk));
    const exited = new Promise<number | null>((resolve) => tracer.on('exit', resolve));
    // Let the trace attach: the CLI takes a second or more to start on a busy machine, so ask the agent, don't guess.
    for (const deadline = Date.now() + 10_000; ((await overlay.status(n1)).traceClients ?? []).length === 0; ) {
      if (Date.now() > deadline) throw new Error('the trace client did not attach within 10 s');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.is((await ping(lab, n1, target, { count: 1 })).received, 1);
    // An address in the cluster network that no lease covers (leases are chosen at random: 10.17.99.0/24 was one once).
    const held = new Set([formatIPv4((await overlay.subnetOf(n1)).address), target]);
    const unleased = ['10.17.99.1', '10.17.98.1'].find((a) => !held.has(a.replace(/\.1$/, '.0')))!;
    await ping(lab, n1, unleased, { count: 1, replyTimeoutSeconds: 1 });
    const timeout = setTimeout(() => tracer.kill(), 10_000);
    assert.is(await exited, 0);
    clearTimeout(timeout);
    const journeys = out.trim().split('\n').map((line) => JSON.parse(line) as Journey);
    assert.is(journeys.length, 3, out);
    const [request, reply, lost] = journeys;
    assert.is(request.direction, 'outbound');
    assert.is(request.verdict, 'sent');
    assert.is(request.inner!.dst, target);
    assert.is(request.route!.via, target);
    assert.ok(request.neighbor && request.fdb, 'neighbor and FDB hits shown');
    assert.is(request.fdb!.dst, n2.underlayIp);
    assert.is(request.outer!.vni, 1);
    assert.match(request.via!, /sendmmsg, batch of 1/);
    assert.is(reply.direction, 'inbound');
    assert.is(reply.verdict, 'delivered');
    assert.is(reply.inner!.src, target);
    assert.is(reply.inner!.icmpType, 0);
    assert.is(lost.verdict, 'dropped', JSON.stringify(lost));
    assert.equal(lost.drop, { stage: 'route', reason: 'no-match' });
    assert.is(lost.icmpSent, 'net-unreachable');
    // tshark reads the pcap: inner echo request, its VXLAN datagram, the reply's datagram, the reply, the lost request.
    const fields = execFileSync('tshark', ['-r', pcap, '-T', 'fields', '-e', 'vxlan.vni', '-e', 'ip.dst', '-e', 'icmp.type', '-E', 'separator=|'], { encoding: 'utf8', timeout: 30_000, stdio: ['ignore', 'pipe', 'ignore'] });
    const rows = fields.trim().split('\n');
    assert.is(rows.length, 5, fields);
    assert.ok(rows.filter((r) => r.startsWith('1|')).length === 2, `two VXLAN datagrams with VNI 1:\n${fields}`);
  } finally {
    await overlay?.close();
    await lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});

Trace.run();
