// `vxtun demo`: the whole idea in under a minute. Three namespaces, a vxtun agent in each, ping between every pair
// of pods, one ping traced hop by hop (over IPv4, and over IPv6 when the host has IPv6: the demo lab is then
// dual-stack, as `vxtun lab up --ipv6`), a TCP throughput run, then everything removed again, even when a step fails.
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { runIperf } from '../../lab/iperf';
import { ping } from '../../lab/ping';
import { detachPod, podStateDir } from '../../lab/pods';
import type { InNamespace, Lab } from '../../lab/topology';
import { streamTrace, traceQuery } from '../../control/status-server';
import { formatJourney } from '../../trace/format';
import type { Journey } from '../../trace/journey';
import { IPPROTO_ICMP } from '../../wire/ipv4';
import { IPPROTO_ICMPV6 } from '../../wire/ipv6';
import { destroyLab, isLabOwnerAlive, listNamespaces, readLabState } from '../../lab/topology';
import { type OverlayLab, buildOverlayLab, formatNodeTable, requireRoot } from './lab';

export const DEMO_LAB_NAME = 'vxt-demo';
const IPERF_SECONDS = 3;

/**
 * Whether the demo lab can be dual-stack: the kernel has IPv6 (/proc/net/if_inet6 exists unless it was built or
 * booted without it, ipv6.disable=1). The lab turns IPv6 on in its own namespaces whatever the host's sysctls say.
 */
export function hostHasIPv6(): boolean {
  return existsSync('/proc/net/if_inet6');
}

export function demoCommand(program: Command): void {
  program
    .command('demo')
    .description('three nodes in namespaces, ping between every pair of pods, a TCP throughput run, then clean up')
    .action(async () => {
      requireRoot('vxtun demo');
      process.exitCode = await runDemo((line) => void process.stdout.write(`${line}\n`));
    });
}

/** Runs the demo, printing with `say`; returns the exit code (0 when every step worked). */
export async function runDemo(say: (line: string) => void): Promise<number> {
  const began = Date.now();
  const previous = readLabState(DEMO_LAB_NAME);
  if (previous !== undefined && isLabOwnerAlive(previous) && previous.ownerPid !== process.pid) {
    throw new Error(`another vxtun demo is running (pid ${previous.ownerPid})`);
  }
  await destroyLab(DEMO_LAB_NAME); // what a crashed demo may have left

  say('vxtun demo: an overlay network run by user-space agents, one per node.');
  say('Each "node" is a network namespace; a bridge between them is the underlay (192.0.2.0/24). Each node runs');
  say('`vxtun agent`, which takes a /24 of 10.17.0.0/16 from a shared store, owns a TUN device, and wraps every');
  say('packet for another node\'s subnet in VXLAN (UDP port 4789) itself, in TypeScript. Each node has a pod: a');
  say('namespace attached by the real CNI plugins (bridge + host-local) from the subnet.env the agent wrote, as');
  say('flannel\'s CNI plugin attaches pods on a Kubernetes node.');
  say('');
  let built: OverlayLab | undefined;
  let failed = 0;
  try {
    const dualStack = hostHasIPv6();
    say(`[1/5] Building 3 nodes, starting their agents, attaching a pod to each${dualStack ? ' (dual stack: IPv4 and IPv6 addresses for pods and TUNs)' : ''}`);
    built = await buildOverlayLab({
      name: DEMO_LAB_NAME, nodes: 3, backend: 'vxlan', persistent: false, say: (line) => say(`      ${line}`),
      ...(dualStack ? { ipv6: {} } : {}),
    });
    const { lab, record } = built;
    say(`      overlay ready in ${built.readySeconds.toFixed(1)} s: every agent has a route to the 2 other nodes`);
    say(formatNodeTable(record).replace(/^/gm, '    '));
    say('      (each pod: eth0 with an address from its node\'s lease, MTU from subnet.env, gateway cni0; pods reach each');
    say('      other with their own addresses, because the agents masquerade only what leaves the cluster network)');
    say('');

    say('[2/5] Ping between every pair of pods (3 echo requests each, pod to pod through the agents)');
    for (const from of built.pods) {
      for (const to of built.pods) {
        if (from === to) continue;
        const result = await ping(lab, from, to.address, { count: 3, intervalSeconds: 0.1 });
        const ok = result.received === result.transmitted;
        if (!ok) failed++;
        const rtt = result.rtt ? `, rtt avg ${result.rtt.avgMs.toFixed(2)} ms (max ${result.rtt.maxMs.toFixed(2)})` : '';
        say(`      ${ok ? 'ok  ' : 'FAIL'} ${from.name} -> ${to.name} ${to.address.padEnd(15)} ${result.received}/${result.transmitted} replies${rtt}`);
      }
    }
    say('');

    const [n1] = record.nodes;
    const [p1, p2] = built.pods;
    say(`[3/5] One ping from pod ${p1!.name} to pod ${p2!.name}, traced hop by hop in ${n1!.name}'s agent (vxtun trace): the request leaving, the reply arriving`);
    const socket = built.overlay.agents.get(n1!.name)!.statusSocket;
    const journeysOf: Array<{ family: string; target: string | undefined; source: string | undefined; protocol: number }> = [
      { family: '', target: p2!.address, source: p1!.address, protocol: IPPROTO_ICMP },
      ...(dualStack ? [{ family: 'IPv6 ', target: p2!.address6, source: p1!.address6, protocol: IPPROTO_ICMPV6 }] : []),
    ];
    for (const { family, target, source, protocol } of journeysOf) {
      try {
        if (target === undefined || source === undefined) throw new Error(`the pods have no ${family}address`);
        if (family !== '') say(`      and the same over IPv6 (docs/one-ping.md follows both), ${p1!.name} ${source} -> ${p2!.name} ${target}:`);
        const journeys = await tracePing(lab, p1!, socket, target, protocol);
        for (const journey of journeys) say(formatJourney(journey).trimEnd().replace(/^/gm, '      '));
        if (journeys.length < 2) throw new Error(`traced ${journeys.length} of 2 ${family}packets`);
        const seen = journeys[0]!.inner?.src;
        if (seen !== source) throw new Error(`the ${family}request left ${n1!.name} from ${seen}, not from pod ${p1!.name} (${source}): NATed`);
        say(`      the ${family}request left ${n1!.name} with the pod's own address, ${seen}: no NAT between pods (Kubernetes requires it)`);
      } catch (error) {
        failed++;
        say(`      FAIL ${(error as Error).message}`);
      }
    }
    say('');

    say(`[4/5] TCP throughput, pod ${p1!.name} -> pod ${p2!.name} (${p2!.address}), iperf3 for ${IPERF_SECONDS} s`);
    try {
      const tcp = await runIperf(lab, { server: p2!, client: p1!, address: p2!.address, seconds: IPERF_SECONDS });
      const retransmits = tcp.retransmits === null ? '' : `, ${tcp.retransmits} retransmits`;
      say(`      ${tcp.gbitPerSecond.toFixed(2)} Gbit/s (${(tcp.bytes / 1e6).toFixed(0)} MB in ${tcp.seconds.toFixed(1)} s${retransmits})`);
      say('      every packet went pod -> cni0 -> TUN -> agent (VXLAN encapsulation) -> bridge -> agent (decapsulation) -> TUN -> cni0 -> pod');
    } catch (error) {
      failed++;
      say(`      FAIL ${(error as Error).message}`);
    }
    say('');
  } catch (error) {
    failed++;
    say(`      FAIL ${(error as Error).message}`);
  } finally {
    say('[5/5] Removing the lab (pods with CNI DEL, agents, namespaces, devices, files)');
    for (const pod of built?.pods ?? []) {
      await detachPod(pod, podStateDir(built!.overlay.workDir, pod.node)).catch((error: Error) => {
        failed++;
        say(`      FAIL CNI DEL of ${pod.name}: ${error.message}`);
      });
    }
    await built?.overlay.close().catch(() => undefined);
    await built?.lab.destroy();
    await destroyLab(DEMO_LAB_NAME);
    const left = (await listNamespaces()).filter((ns) => ns.startsWith(`${DEMO_LAB_NAME}-`));
    if (left.length > 0) {
      failed++;
      say(`      FAIL namespaces left behind: ${left.join(', ')}`);
    } else {
      say('      done: nothing left behind');
    }
  }
  say('');
  const seconds = ((Date.now() - began) / 1000).toFixed(1);
  if (failed > 0) {
    say(`demo finished in ${seconds} s with ${failed} failed step${failed === 1 ? '' : 's'}`);
    return 1;
  }
  say(`demo finished in ${seconds} s. Next: \`vxtun lab up\` builds the same lab and leaves it running for you.`);
  return 0;
}

/**
 * Attaches to an agent's trace of `protocol` (ICMP, or ICMPv6 for an IPv6 target), sends one ping, and returns the
 * journeys of the request and its reply.
 */
async function tracePing(lab: Lab, from: InNamespace, socket: string, target: string, protocol: number): Promise<Journey[]> {
  const journeys: Journey[] = [];
  let stream: { close(): void } | undefined;
  const finished = new Promise<void>((resolve, reject) => {
    stream = streamTrace(
      socket,
      traceQuery({ protocol }),
      (journey) => {
        // Only this ping: with IPv6 the kernel's own ICMPv6 (MLD, router solicitations) also meets the TUN.
        if (journey.inner?.src !== target && journey.inner?.dst !== target) return;
        journeys.push(journey);
        if (journeys.length === 2) resolve();
      },
      (error) => (error ? reject(error) : resolve()),
    );
  });
  try {
    await new Promise((resolve) => setTimeout(resolve, 300)); // let the agent attach the tracer
    await ping(lab, from, target, { count: 1 });
    await Promise.race([finished, new Promise((resolve) => setTimeout(resolve, 3000))]);
  } finally {
    stream?.close();
  }
  return journeys;
}
