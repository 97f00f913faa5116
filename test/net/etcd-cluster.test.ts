// vxtun agents on a three-member etcd cluster, as in production: each member in its own lab namespace on the underlay
// (n1-n3, 192.0.2.11-13:2379), agents in n4-n6 given all three endpoints. While leases churn, the leader is killed,
// an agent starts while the first endpoint it is given is dead, and then the member most agents' streams use is
// black-holed (its etcd ports drop packets, nothing is reset) and brought back. Through all of it a ping between two
// nodes at 0.1 s loses nothing, and at the end every agent's routes are exactly the store's leases.
import { readFileSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DEFAULT_PREFIX, formatLeaseAttrs, parseSubnetKey, subnetKey, subnetsPrefix } from '../../src/control/lease';
import { formatNetworkConfig } from '../../src/control/network-config';
import { startEtcdCluster, type EtcdCluster } from '../../src/lab/etcd-server';
import { Overlay } from '../../src/lab/overlay';
import { parsePingOutput, type PingResult } from '../../src/lab/ping';
import { CommandError } from '../../src/lab/shell';
import { RelayedStore } from '../../src/lab/store-relay';
import { createLab, type Lab, type LabNode } from '../../src/lab/topology';
import { formatCidr, formatIPv4, parseCidr, parseIPv4, parseMac } from '../../src/wire/address';

const Cluster = suite('agents on a three-member etcd cluster: leader killed, member black-holed');

const BLACK_HOLE_TABLE = 'vxt_black_hole';

async function eventually(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await check().catch(() => false)) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Drops every packet to or from etcd's ports in the member's namespace, both ways: no RST, no ICMP, just silence. */
async function blackHole(lab: Lab, member: LabNode): Promise<void> {
  const rules = ['input', 'output']
    .map((hook) => [
      `add chain inet ${BLACK_HOLE_TABLE} ${hook} { type filter hook ${hook} priority 0; policy accept; }`,
      `add rule inet ${BLACK_HOLE_TABLE} ${hook} tcp dport { 2379, 2380 } drop`,
      `add rule inet ${BLACK_HOLE_TABLE} ${hook} tcp sport { 2379, 2380 } drop`,
    ])
    .flat();
  await lab.exec(member, 'nft', ['-f', '-'], { input: [`add table inet ${BLACK_HOLE_TABLE}`, ...rules, ''].join('\n') });
}

async function restoreFromBlackHole(lab: Lab, member: LabNode): Promise<void> {
  await lab.exec(member, 'nft', ['delete', 'table', 'inet', BLACK_HOLE_TABLE]);
}

/** The agent nodes with an established client connection to the member's port 2379. */
async function clientsOf(lab: Lab, member: LabNode, agents: readonly LabNode[]): Promise<LabNode[]> {
  const { stdout } = await lab.exec(member, 'ss', ['-Htn', 'state', 'established', '( sport = :2379 )']);
  return agents.filter((agent) => stdout.includes(`${agent.underlayIp}:`));
}

/** Packets the kernel dropped because a CPU's input backlog was full (/proc/net/softnet_stat, second column), all CPUs. */
function backlogDrops(): number {
  return readFileSync('/proc/net/softnet_stat', 'utf8')
    .trim()
    .split('\n')
    .reduce((sum, line) => sum + parseInt(line.trim().split(/\s+/)[1] ?? '0', 16), 0);
}

/** The leading member's index, asked until one answers (an election may be under way; etcdctl may be slow). */
async function leaderOf(cluster: EtcdCluster, from: LabNode): Promise<number> {
  let leader = -1;
  let lastError: unknown;
  await eventually('a member to say it leads', 15_000, async () => {
    try {
      leader = await cluster.leader(from.netns);
      return true;
    } catch (error) {
      lastError = error;
      return false;
    }
  }).catch((error: Error) => {
    throw new Error(`${error.message}: ${lastError instanceof Error ? lastError.message : String(lastError)}`);
  });
  return leader;
}

/**
 * `ping -i 0.1` for `count` packets. As lab/ping.ts's ping(), with a generous time limit: on a machine shared with
 * other tests ping's own timer can run late, which is slowness, not loss (loss is what the counts say).
 */
async function pingThroughout(lab: Lab, from: LabNode, address: string, count: number): Promise<PingResult & { missing: number[] }> {
  // -c with -w: ping ends when `count` replies are in or at the deadline, so a reply delayed by a stalled (CPU-starved)
  // path still counts; only a request never answered is a loss.
  const deadlineSeconds = Math.ceil(count / 10) + 30;
  const args = ['-n', '-c', String(count), '-i', '0.1', '-w', String(deadlineSeconds), address];
  let stdout: string;
  try {
    stdout = (await lab.exec(from, 'ping', args, { timeoutMs: (deadlineSeconds + 15) * 1000 })).stdout;
  } catch (error) {
    if (!(error instanceof CommandError && error.exitCode === 1)) throw error;
    stdout = error.stdout; // replies missing
  }
  // Which requests went unanswered (seq n left at about n / 10 s into the episode), to tell when the loss was.
  const answered = new Set([...stdout.matchAll(/icmp_seq=(\d+) /g)].map((m) => Number(m[1])));
  const missing = Array.from({ length: count }, (_, i) => i + 1).filter((seq) => !answered.has(seq));
  return { ...parsePingOutput(stdout), missing };
}

/** A fake node's lease: routes to it are made, nothing answers there. */
function fakeLease(i: number): { key: string; value: string } {
  const subnet = parseCidr(`10.17.${100 + i}.0/24`);
  const value = formatLeaseAttrs({
    publicIp: parseIPv4(`192.0.2.${150 + (i % 100)}`),
    backendType: 'vxlan',
    backendData: { vni: 1, vtepMac: parseMac(`0e:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`) },
  });
  return { key: subnetKey(DEFAULT_PREFIX, subnet), value };
}

/** Adds and removes fake leases every 200 ms until stopped; an outage only makes some of its writes fail. */
function churn(store: RelayedStore): { stop(): Promise<{ writes: number; failures: number }> } {
  let running = true;
  let writes = 0;
  let failures = 0;
  const present = new Set<number>();
  const loop = (async () => {
    for (let n = 0; running; n++) {
      const i = Math.floor(Math.random() * 40);
      try {
        if (present.has(i) && n % 3 !== 0) {
          await store.delete(fakeLease(i).key);
          present.delete(i);
          writes++;
        } else if (!present.has(i)) {
          // Only into a free subnet: overwriting an agent's lease would take its subnet away (it would be lost).
          const { key, value } = fakeLease(i);
          if (await store.put(key, value, { ttlSeconds: 3600, ifAbsent: true })) {
            present.add(i);
            writes++;
          }
        }
      } catch {
        failures++;
      }
      await sleep(200);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { writes, failures };
    },
  };
}

Cluster('no lease lost, no ping lost: leader killed, agent started on a dead first endpoint, member black-holed', async () => {
  const lab = await createLab({ name: `vxt-ec${process.pid}`, nodes: 6 });
  let cluster: EtcdCluster | undefined;
  let overlay: Overlay | undefined;
  let store: RelayedStore | undefined;
  let writer: ReturnType<typeof churn> | undefined;
  const [m1, m2, m3, a1, a2, a3] = lab.nodes;
  const members = [m1, m2, m3];
  const agents = [a1, a2, a3];
  try {
    // Progress notifications every second, so that quiet watches resume without a resync after the episode.
    cluster = await startEtcdCluster({ members: members.map((m) => ({ netns: m.netns, host: m.underlayIp })), progressNotifyIntervalMs: 1000 });
    const clusterUrl = cluster.url;
    // The overlay's own (file) store only holds a config nobody reads: the agents are given the cluster.
    overlay = await Overlay.create(lab, { backend: 'vxlan' });
    overlay.storeUrl = clusterUrl;
    store = new RelayedStore(a1.netns, clusterUrl);
    await store.put(`${DEFAULT_PREFIX}/config`, formatNetworkConfig({ network: parseCidr(overlay.network), backend: { type: 'vxlan', vni: 1, port: overlay.port, directRouting: false } }));
    await overlay.startAgent(a1);
    await overlay.startAgent(a2);
    await overlay.waitForRoutes(a1, 1);
    await overlay.waitForRoutes(a2, 1);
    const target = formatIPv4((await overlay.subnetOf(a2)).address);

    const episodeSeconds = 45;
    const backlogDropsBefore = backlogDrops();
    const pinging = pingThroughout(lab, a1, target, episodeSeconds * 10);
    pinging.catch(() => {}); // awaited below; a failure before then must not end the process first
    writer = churn(store);
    const started = Date.now();
    const at = (what: string) => process.stdout.write(`  ${((Date.now() - started) / 1000).toFixed(1)} s: ${what}\n`);

    await sleep(2000);
    const leader = await leaderOf(cluster, a1);
    await cluster.members[leader].kill();
    at(`killed the leader, member ${leader + 1}`);
    // The agent below is about endpoints, not elections: let the two left choose a leader first.
    const next = await leaderOf(cluster, a1);
    at(`member ${next + 1} leads`);
    // The third agent is given the dead member first.
    overlay.storeUrl = `etcd://${[cluster.endpoints[leader], ...cluster.endpoints.filter((_, i) => i !== leader)].join(',')}`;
    await overlay.startAgent(a3);
    overlay.storeUrl = clusterUrl;
    at('an agent started with the dead member as its first endpoint');
    await cluster.members[leader].restart();
    at(`member ${leader + 1} is back`);

    // Black-hole the member that most agents' streams use (the test means nothing if none does).
    let victim = 0;
    let victimClients: LabNode[] = [];
    for (const [i, member] of members.entries()) {
      const clients = await clientsOf(lab, member, agents);
      if (clients.length > victimClients.length) [victim, victimClients] = [i, clients];
    }
    assert.ok(victimClients.length > 0, 'some agent talks to some member');
    const victimLeads = (await leaderOf(cluster, a1)) === victim;
    await blackHole(lab, members[victim]);
    const holedAt = Date.now();
    at(`black-holed member ${victim + 1}${victimLeads ? ' (the leader)' : ''}, used by ${victimClients.map((n) => n.name).join(', ')}`);
    // A lease written now must reach every agent, also those whose streams went silent with the member.
    let probe = fakeLease(99);
    await eventually('the probe lease to be written', 15_000, async () => {
      for (let i = 99; i > 40; i--) {
        probe = fakeLease(i);
        if (await store!.put(probe.key, probe.value, { ttlSeconds: 3600, ifAbsent: true })) return true;
      }
      return false;
    });
    const probeSubnet = formatCidr(parseSubnetKey(probe.key)!);
    for (const agent of agents) {
      await eventually(`${agent.name} to learn the probe lease`, 20_000, async () => (await overlay!.status(agent)).routes.some((r) => r.subnet === probeSubnet));
    }
    const noticedMs = Date.now() - holedAt;
    at(`every agent learned a lease written after the black hole, ${noticedMs} ms after it`);
    assert.ok(noticedMs < 20_000, `a silent member is noticed within about 15 s (keepalive): ${noticedMs} ms`);
    await sleep(Math.max(0, 22_000 - (Date.now() - holedAt)));
    await restoreFromBlackHole(lab, members[victim]);
    at(`member ${victim + 1} reachable again`);
    await eventually(`member ${victim + 1} to rejoin`, 15_000, async () => {
      await lab.exec(members[victim], 'etcdctl', [`--endpoints=${cluster!.endpoints[victim]}`, '--command-timeout=1s', 'endpoint', 'health'], { timeoutMs: 3000 });
      return true;
    });
    const churned = await writer.stop();
    at(`churn stopped: ${churned.writes} writes, ${churned.failures} failed during outages`);
    assert.ok(churned.writes > 40, 'leases really churned');

    // Every agent's view equals the store's: routes to every other lease, and to nothing else.
    const expected = async (self: LabNode): Promise<string[]> => {
      const own = formatCidr(await overlay!.subnetOf(self));
      const listed = await store!.list(subnetsPrefix(DEFAULT_PREFIX));
      return listed.kvs.map((kv) => formatCidr(parseSubnetKey(kv.key)!)).filter((s) => s !== own).sort();
    };
    for (const agent of agents) {
      let last: string[] = [];
      let want: string[] = [];
      try {
        await eventually(`${agent.name}'s routes to equal the store's leases`, 15_000, async () => {
          want = await expected(agent);
          last = (await overlay!.status(agent)).routes.map((r) => r.subnet).sort();
          return JSON.stringify(last) === JSON.stringify(want);
        });
      } catch (error) {
        assert.equal(last, want, `${agent.name}: ${(error as Error).message}`);
      }
    }
    const result = await pinging;
    at(`ping ${a1.name} -> ${a2.name}: ${result.received}/${result.transmitted}`);
    assert.is(result.transmitted, episodeSeconds * 10);
    // The kernel's per-CPU input backlog is shared by every namespace of the machine: when other tests flood it, it
    // drops packets (ours too). Said with a failure, to tell that from a drop of ours.
    const sharedDrops = backlogDrops() - backlogDropsBefore;
    assert.is(
      result.received,
      result.transmitted,
      `no packet lost between existing nodes (unanswered: ${result.missing.join(' ')}; the machine's backlog dropped ${sharedDrops} packets meanwhile)`,
    );
    for (const agent of agents) assert.ok((await overlay.status(agent)).storeConnected, `${agent.name} connected at the end`);
  } catch (error) {
    if (overlay) {
      for (const agent of agents) {
        const fake = /msg="node (joined|left)" .*publicIp=192\.0\.2\.(1[5-9]\d|2[0-4]\d)(\s|$)/;
        const unusual = overlay.log(agent).split('\n').filter((line) => !fake.test(line));
        process.stderr.write(`--- agent log ${agent.name} (without fake nodes joining and leaving)\n${unusual.join('\n').slice(-4000)}\n`);
      }
    }
    if (cluster) for (const [i, member] of cluster.members.entries()) process.stderr.write(`--- etcd ${i + 1}\n${member.recentLog().slice(-2000)}\n`);
    throw error;
  } finally {
    await writer?.stop();
    await store?.close();
    await overlay?.close();
    await cluster?.stop();
    await lab.destroy();
  }
});

Cluster.run();
