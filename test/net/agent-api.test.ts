// The agent's local API against real agents: a request it cannot serve is answered with the reason and the agent
// lives on; a trace client that stops reading while traffic flows costs the agent a bounded amount of memory and
// is told how many journeys it missed.
import { spawn } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { AgentStatus } from '../../src/control/agent';
import { runIperf } from '../../src/lab/iperf';
import { CLI_PATH } from '../../src/lab/overlay';
import { CommandError } from '../../src/lab/shell';
import { formatIPv4 } from '../../src/wire/address';
import { withOverlay } from '../support/overlay';

const Api = suite('agent api');

Api('vxtun trace against a host-gw agent prints the reason and exits non-zero; the agent keeps running', async () => {
  await withOverlay('ah', 2, { backend: 'host-gw' }, async (lab, overlay) => {
    const [n1, n2] = lab.nodes;
    for (const node of lab.nodes) await overlay.startAgent(node);
    await overlay.waitForRoutes(n1, 1);
    const handle = overlay.agents.get(n1.name)!;
    for (let i = 0; i < 2; i++) {
      const failure = await lab.exec(n1, process.execPath, [CLI_PATH, 'trace', '--socket', handle.statusSocket], { timeoutMs: 10_000 }).then(
        () => undefined,
        (err: unknown) => err,
      );
      assert.instance(failure, CommandError, 'vxtun trace failed');
      assert.is((failure as CommandError).exitCode, 1);
      assert.match((failure as CommandError).stderr, /refused the trace \(HTTP 409\): host-gw has no vxtun data plane to trace/);
    }
    assert.is(handle.process.exitCode, null, 'the agent is alive');
    assert.is(handle.process.signalCode, null);
    assert.is((await overlay.status(n1)).routes.length, 1);
    // And it still answers a good request after a bad one.
    await overlay.waitForRoutes(n2, 1);
  });
});

Api('a trace client that stops reading during a UDP flood: the agent heap stays bounded, drops are reported on resume', async () => {
  await withOverlay('as', 2, { backend: 'vxlan' }, async (lab, overlay) => {
    const [n1, n2] = lab.nodes;
    for (const node of lab.nodes) await overlay.startAgent(node);
    await overlay.waitForRoutes(n1, 1);
    const target = formatIPv4((await overlay.subnetOf(n2)).address);
    const heapBefore = (await overlay.status(n1)).memory.heapUsedBytes;
    // The client's stdout is a pipe nobody reads: it fills, the client stops reading the agent, the agent's queue fills.
    const tracer = spawn(process.execPath, [CLI_PATH, 'trace', '--socket', overlay.agents.get(n1.name)!.statusSocket, '--json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    tracer.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const exited = new Promise<number | null>((resolve) => tracer.on('exit', resolve));
    try {
      // Let the trace attach: the CLI takes a second or more to start on a busy machine, so ask the agent.
      for (const deadline = Date.now() + 10_000; ((await overlay.status(n1)).traceClients ?? []).length === 0; ) {
        if (Date.now() > deadline) throw new Error('the trace client did not attach within 10 s');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      let heapMax = heapBefore;
      let queuedMax = 0;
      let droppedByAgent = 0;
      let sampling = true;
      // Polls the agent until the flood is over; stopped and awaited in `finally`, so it never outlives the lab.
      const sampler = (async () => {
        while (sampling) {
          const s: AgentStatus = await overlay.status(n1);
          heapMax = Math.max(heapMax, s.memory.heapUsedBytes);
          const client = s.traceClients?.[0];
          if (client !== undefined) {
            queuedMax = Math.max(queuedMax, client.queuedBytes);
            droppedByAgent = client.droppedJourneys;
          }
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      })();
      let flood: Awaited<ReturnType<typeof runIperf>>;
      try {
        flood = await runIperf(lab, { server: n2, client: n1, address: target, protocol: 'udp', udpPacketSize: 64, seconds: 3 });
      } finally {
        sampling = false;
        await sampler;
      }
      const packets = Math.round((flood.packetsPerSecond ?? 0) * 3);
      assert.ok(packets > 10_000, `the flood carried ${packets} packets`);
      // Each datagram is a journey of ~300 bytes: unbounded, all of them would queue in the agent (MBs).
      assert.ok(queuedMax <= 1024 * 1024 + 4096, `the agent queued ${queuedMax} bytes for the stalled client`);
      assert.ok(droppedByAgent > 0, 'the agent dropped journeys for the stalled client');
      const growthMB = (heapMax - heapBefore) / 1e6;
      assert.ok(growthMB < 32, `agent heap grew by ${growthMB.toFixed(1)} MB during the flood of ${packets} packets`);
      assert.is(stderr.match(/journeys dropped/), null, 'nothing reported while the client is stalled');
      tracer.stdout.resume(); // the client reads again: the agent tells it what it missed
      const deadline = Date.now() + 10_000;
      while (!/\d+ journeys dropped: the trace client was too slow/.test(stderr) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const dropped = [...stderr.matchAll(/(\d+) journeys dropped: the trace client was too slow/g)].reduce((sum, m) => sum + Number(m[1]), 0);
      assert.ok(dropped > 0, `the client was told of dropped journeys:\n${stderr}`);
      tracer.kill('SIGINT');
      assert.is(await exited, 0);
      assert.is(overlay.agents.get(n1.name)!.process.exitCode, null, 'the agent is alive');
    } finally {
      if (tracer.exitCode === null && tracer.signalCode === null) tracer.kill('SIGKILL');
    }
  });
});

Api.run();
