// The lab itself, for real (root): namespaces on a bridge, cleanup after normal ends and after crashes, and a
// two-node overlay made of Linux's VXLAN devices programmed the way flannel programs them.

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLab, destroyLab, destroyStaleLabs, labNamespacePattern, labStatePath, listNamespaces, readLabState, type Lab } from '../../src/lab/topology';
import { spawnIn, run, CommandError } from '../../src/lab/shell';
import { addKernelPeer, createKernelVtep, disableTxChecksumOffload, removeKernelPeer, type KernelPeer } from '../../src/lab/kernel-vxlan';
import { attachPod } from '../../src/lab/pods';
import { writeSubnetEnv } from '../../src/control/subnet-env';
import { parseCidr } from '../../src/wire/address';
import { ping, parsePingOutput, percentile } from '../../src/lab/ping';
import { parseIperfJson, runIperf } from '../../src/lab/iperf';

const REPO = join(__dirname, '..', '..');
const base = `vxt-l${process.pid}`; // unique per test process, so parallel runs never meet

function exited(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once('exit', () => { clearTimeout(timer); resolve(true); });
  });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}

async function rejects(promise: () => Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await promise();
  } catch (error) {
    assert.match(error instanceof Error ? error.message : String(error), pattern);
    return;
  }
  assert.unreachable(`expected a rejection matching ${pattern}`);
}

async function labNamespaces(name: string): Promise<string[]> {
  return (await listNamespaces()).filter((ns) => ns.startsWith(`${name}-`));
}

// ---- parsers (no root needed, but they belong with the tools they parse) ----------------------------------------

test('parsePingOutput reads counts and per-reply times; percentiles by nearest rank', () => {
  const text = [
    'PING 10.17.2.0 (10.17.2.0) 56(84) bytes of data.',
    '64 bytes from 10.17.2.0: icmp_seq=1 ttl=64 time=0.339 ms',
    '64 bytes from 10.17.2.0: icmp_seq=2 ttl=64 time=0.071 ms',
    '64 bytes from 10.17.2.0: icmp_seq=4 ttl=64 time=1.50 ms',
    '',
    '--- 10.17.2.0 ping statistics ---',
    '4 packets transmitted, 3 received, 25% packet loss, time 606ms',
    'rtt min/avg/max/mdev = 0.071/0.637/1.500/0.6 ms',
  ].join('\n');
  const result = parsePingOutput(text);
  assert.is(result.transmitted, 4);
  assert.is(result.received, 3);
  assert.is(result.lossPercent, 25);
  assert.equal(result.rttsMs, [0.339, 0.071, 1.5]);
  assert.is(result.rtt?.minMs, 0.071);
  assert.is(result.rtt?.p50Ms, 0.339);
  assert.is(result.rtt?.p99Ms, 1.5);
  assert.is(parsePingOutput('2 packets transmitted, 0 received, 100% packet loss').rtt, null);
  assert.is(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50), 5);
  assert.is(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 99), 10);
  assert.throws(() => parsePingOutput('ping: unknown host'), /not ping output/);
});

test('parseIperfJson takes the receiver totals (TCP) and received datagrams and loss (UDP)', () => {
  const tcp = parseIperfJson(JSON.stringify({
    start: { test_start: { protocol: 'TCP' } },
    end: {
      sum_sent: { seconds: 2, bytes: 5e9, bits_per_second: 20e9, retransmits: 7 },
      sum_received: { seconds: 2, bytes: 4.5e9, bits_per_second: 18e9 },
    },
  }));
  assert.is(tcp.protocol, 'tcp');
  assert.is(tcp.gbitPerSecond, 18);
  assert.is(tcp.retransmits, 7);
  assert.is(tcp.packetsPerSecond, null);
  const udp = parseIperfJson(JSON.stringify({
    start: { test_start: { protocol: 'UDP' } },
    end: { sum_received: { seconds: 2, bytes: 1e9, bits_per_second: 4e9, packets: 1000, lost_packets: 100, lost_percent: 10, jitter_ms: 0.01 } },
  }));
  assert.is(udp.protocol, 'udp');
  assert.is(udp.packetsPerSecond, 450);
  assert.is(udp.lostPackets, 100);
  assert.is(udp.lossPercent, 10);
  assert.throws(() => parseIperfJson('{"error":"unable to connect to server"}'), /unable to connect/);
  assert.throws(() => parseIperfJson('iperf3: error'), /not JSON/);
});

test('run reports the command line and stderr of a failing command', async () => {
  try {
    await run('ip', ['link', 'show', 'dev', 'vxt-does-not-exist']);
    assert.unreachable('should have failed');
  } catch (error) {
    assert.instance(error, CommandError);
    const failure = error as CommandError;
    assert.is(failure.exitCode, 1);
    assert.match(failure.message, 'ip link show dev vxt-does-not-exist');
    assert.match(failure.message, /does not exist/);
  }
});

// ---- namespaces ------------------------------------------------------------------------------------------------

test('a 3-node lab: every node reaches every other over the underlay; destroy leaves nothing', async () => {
  const name = `${base}-a`;
  const lab = await createLab({ name, nodes: 3 });
  let tracked: ChildProcess | undefined;
  let untracked: ChildProcess | undefined;
  const logDir = mkdtempSync(join(tmpdir(), 'vxt-lab-'));
  try {
    assert.equal(lab.nodes.map((n) => n.underlayIp), ['192.0.2.11', '192.0.2.12', '192.0.2.13']);
    assert.equal((await labNamespaces(name)).sort(), [`${name}-hub`, `${name}-n1`, `${name}-n2`, `${name}-n3`]);
    assert.ok(existsSync(labStatePath(name)), 'state file written');
    const pairs = lab.nodes.flatMap((from) => lab.nodes.filter((to) => to !== from).map((to) => ({ from, to })));
    const results = await Promise.all(pairs.map(({ from, to }) => ping(lab, from, to.underlayIp, { count: 2 })));
    results.forEach((result, i) => assert.is(result.received, 2, `${pairs[i]!.from.name} -> ${pairs[i]!.to.name}`));
    // Nothing in the root namespace: no eth0/veth of ours there.
    const rootLinks = (await run('ip', ['-o', 'link', 'show'])).stdout;
    assert.not.match(rootLinks, name);

    // An agent's way of running: output appended to a log file that outlives it.
    const logFile = join(logDir, 'n1.log');
    tracked = lab.spawn(lab.node(1), 'sh', ['-c', 'echo "in $(ip -br addr show dev eth0)"; exec sleep 60'], { logFile });
    assert.ok(await waitUntil(() => existsSync(logFile) && readFileSync(logFile, 'utf8').includes('192.0.2.11/24'), 3000),
      'spawned process runs inside node 1 and logs to the file');
    // A process the lab did not start, still inside its namespace: destroy must find it by `ip netns pids`.
    untracked = spawnIn(lab.node(2).netns, 'sleep', ['60'], { stdio: 'ignore' });
    await waitUntil(() => tracked!.pid !== undefined && untracked!.pid !== undefined, 1000);
  } finally {
    await lab.destroy();
    rmSync(logDir, { recursive: true, force: true });
  }
  await lab.destroy(); // idempotent
  assert.equal(await labNamespaces(name), []);
  assert.not.ok(existsSync(labStatePath(name)), 'state file removed');
  assert.ok(await exited(tracked!, 3000), 'tracked process stopped');
  assert.ok(await exited(untracked!, 3000), 'untracked process in the namespace killed');
});

test('a lab refuses names outside vxt- and existing names; takes another underlay and MTU', async () => {
  await rejects(() => createLab({ name: 'lab1', nodes: 1 }), /must start with "vxt-"/);
  const name = `${base}-b`;
  const lab = await createLab({ name, nodes: 1 });
  try {
    await rejects(() => createLab({ name, nodes: 1 }), /already exists/);
    assert.ok(existsSync(labStatePath(name)), 'the refused duplicate did not remove the live lab state');
  } finally {
    await lab.destroy();
  }
  const custom = await createLab({ name: `${base}-c`, nodes: 1, underlay: '198.51.100.0/24', mtu: 9000 });
  try {
    const eth0 = JSON.parse((await custom.exec(custom.node(1), 'ip', ['-j', 'addr', 'show', 'dev', 'eth0'])).stdout) as Array<{
      mtu: number; addr_info: Array<{ family: string; local: string; prefixlen: number }>;
    }>;
    assert.is(eth0[0]!.mtu, 9000);
    assert.ok(eth0[0]!.addr_info.some((a) => a.family === 'inet' && a.local === '198.51.100.11' && a.prefixlen === 24));
  } finally {
    await custom.destroy();
  }
});

test('namespaces added to a lab (pods, the outside host) are recorded first and go with the lab', async () => {
  const name = `${base}-p`;
  const lab = await createLab({ name, nodes: 1 });
  try {
    const pod = await lab.addNamespace('n1-p1');
    assert.is(pod, `${name}-n1-p1`);
    assert.ok(readLabState(name)!.namespaces.includes(pod), 'recorded in the state file, for crash cleanup');
    assert.ok(labNamespacePattern(name).test(pod) && labNamespacePattern(name).test(`${name}-out`), 'destroyLab finds them by name too');
    assert.not.ok(labNamespacePattern(name).test(`${name}-x-n1`), "another lab's namespaces are not ours");
    await rejects(() => lab.addNamespace('n1-p1'), /already has namespace/);
    await lab.addNamespace('out');
    await lab.removeNamespace(`${name}-out`);
    assert.not.ok(readLabState(name)!.namespaces.includes(`${name}-out`));
    assert.equal((await labNamespaces(name)).sort(), [`${name}-hub`, `${name}-n1`, pod].sort());
  } finally {
    await lab.destroy();
  }
  assert.equal(await labNamespaces(name), []);
});

// ---- crashes ---------------------------------------------------------------------------------------------------

/** A separate process that makes a lab, starts `sleep` in node 1, prints its pid, and then waits. */
function startLabOwner(name: string): Promise<{ owner: ChildProcess; sleeperPid: number }> {
  const script = `
    const { createLab } = require(${JSON.stringify(join(REPO, 'src/lab/topology'))});
    createLab({ name: ${JSON.stringify(name)}, nodes: 2 }).then((lab) => {
      const sleeper = lab.spawn(lab.node(1), 'sleep', ['60'], { stdio: 'ignore' });
      sleeper.once('spawn', () => process.stdout.write(JSON.stringify({ sleeperPid: sleeper.pid }) + '\\n'));
      setInterval(() => {}, 1000);
    }, (error) => { console.error(error); process.exit(1); });`;
  const owner = spawn(process.execPath, ['-r', 'tsx/cjs', '-e', script], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => { owner.kill('SIGKILL'); reject(new Error(`lab owner not ready: ${err}`)); }, 15_000);
    owner.stderr!.on('data', (chunk: Buffer) => { err += chunk.toString(); });
    owner.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) {
        clearTimeout(timer);
        resolve({ owner, sleeperPid: (JSON.parse(line) as { sleeperPid: number }).sleeperPid });
      }
    });
    owner.once('exit', (code) => { clearTimeout(timer); reject(new Error(`lab owner exited (${code}): ${err}`)); });
  });
}

test('a lab whose process is killed with SIGKILL is removed by destroyStaleLabs', async () => {
  const name = `${base}-k`;
  try {
    const { owner, sleeperPid } = await startLabOwner(name);
    owner.kill('SIGKILL');
    assert.ok(await exited(owner, 5000), 'owner died');
    assert.is((await labNamespaces(name)).length, 3, 'SIGKILL left the namespaces behind');
    assert.ok(processAlive(sleeperPid), 'and the process inside');

    // A live lab with a matching prefix is someone's running test: left alone.
    const live = await createLab({ name: `${name}-live`, nodes: 1 });
    try {
      const removed = await destroyStaleLabs(name);
      assert.equal(removed.sort(), [`${name}-hub`, `${name}-n1`, `${name}-n2`]);
      assert.equal((await labNamespaces(name)).sort(), [`${name}-live-hub`, `${name}-live-n1`]);
    } finally {
      await live.destroy();
    }
    assert.not.ok(existsSync(labStatePath(name)), 'state file removed');
    assert.ok(await waitUntil(() => !processAlive(sleeperPid), 3000), 'process inside the lab killed');
  } finally {
    await destroyLab(name);
  }
});

test('a lab whose process gets SIGTERM removes itself before dying', async () => {
  const name = `${base}-t`;
  try {
    const { owner, sleeperPid } = await startLabOwner(name);
    owner.kill('SIGTERM');
    assert.ok(await exited(owner, 10_000), 'owner exited');
    assert.is(owner.signalCode, 'SIGTERM', 'the signal was re-raised: the process died of it');
    assert.equal(await labNamespaces(name), []);
    assert.not.ok(existsSync(labStatePath(name)), 'state file removed');
    assert.ok(await waitUntil(() => !processAlive(sleeperPid), 3000), 'process inside the lab killed');
  } finally {
    await destroyLab(name);
  }
});

// ---- flannel's kernel VXLAN --------------------------------------------------------------------------------------

test('kernel VXLAN as flannel programs it: two nodes reach each other over port 8472', async () => {
  const lab: Lab = await createLab({ name: `${base}-v`, nodes: 2 });
  try {
    const [n1, n2] = [lab.node(1), lab.node(2)];
    const vteps = [
      { node: n1, subnet: '10.17.1.0/24', mac: '0e:00:00:11:01:00' },
      { node: n2, subnet: '10.17.2.0/24', mac: '0e:00:00:11:02:00' },
    ];
    for (const v of vteps) {
      const vtep = await createKernelVtep(lab, v.node, { vni: 1, port: 8472, vtepMac: v.mac, address: v.subnet });
      assert.is(vtep.device, 'flannel.1');
      assert.is(vtep.mtu, 1450);
    }
    const peerOf = (v: (typeof vteps)[number]): KernelPeer => ({ subnet: v.subnet, vtepMac: v.mac, publicIp: v.node.underlayIp, vni: 1 });
    await addKernelPeer(lab, n1, peerOf(vteps[1]!));
    await addKernelPeer(lab, n2, peerOf(vteps[0]!));

    const details = JSON.parse((await lab.exec(n1, 'ip', ['-j', '-d', 'link', 'show', 'flannel.1'])).stdout) as Array<{
      mtu: number; address: string; linkinfo: { info_kind: string; info_data: { id: number; port: number; local: string; learning: boolean } };
    }>;
    const info = details[0]!;
    assert.is(info.address, '0e:00:00:11:01:00');
    assert.is(info.linkinfo.info_kind, 'vxlan');
    assert.equal([info.linkinfo.info_data.id, info.linkinfo.info_data.port, info.linkinfo.info_data.local, info.linkinfo.info_data.learning],
      [1, 8472, '192.0.2.11', false]);
    assert.match((await lab.exec(n1, 'ip', ['-4', 'addr', 'show', 'dev', 'flannel.1'])).stdout, 'inet 10.17.1.0/32');
    assert.match((await lab.exec(n1, 'ip', ['neigh', 'show', 'dev', 'flannel.1'])).stdout, '10.17.2.0 lladdr 0e:00:00:11:02:00 PERMANENT');
    assert.match((await lab.exec(n1, 'bridge', ['fdb', 'show', 'dev', 'flannel.1'])).stdout, '0e:00:00:11:02:00 dst 192.0.2.12 self permanent');
    assert.match((await lab.exec(n1, 'ip', ['route', 'show', '10.17.2.0/24'])).stdout, '10.17.2.0/24 via 10.17.2.0 dev flannel.1 onlink');

    const overlay = await ping(lab, n1, '10.17.2.0', { count: 3 });
    assert.is(overlay.received, 3, 'n1 -> n2 VTEP over VXLAN');
    assert.is((await ping(lab, n2, '10.17.1.0', { count: 3 })).received, 3, 'n2 -> n1 VTEP over VXLAN');
    // The traffic really went through the VXLAN devices, not some other path.
    const stats = JSON.parse((await lab.exec(n2, 'ip', ['-j', '-s', 'link', 'show', 'flannel.1'])).stdout) as Array<{ stats64: { rx: { packets: number } } }>;
    assert.ok(stats[0]!.stats64.rx.packets >= 3, 'flannel.1 on n2 received the echo requests');

    // A pod behind the VTEP (attached by the CNI plugins from a subnet.env as flanneld writes it) is reached through
    // the route for the whole lease.
    const cniDir = mkdtempSync(join(tmpdir(), 'vxt-cni-'));
    try {
      await writeSubnetEnv(join(cniDir, 'subnet.env'), { network: parseCidr('10.17.0.0/16'), subnet: parseCidr('10.17.2.0/24'), mtu: 1450, ipMasq: true });
      const pod = await attachPod(lab, n2, 1, { subnetEnvFile: join(cniDir, 'subnet.env'), stateDir: cniDir });
      assert.is(pod.address, '10.17.2.2');
      assert.is((await ping(lab, n1, pod.address, { count: 2 })).received, 2, 'n1 -> pod on n2');
    } finally {
      rmSync(cniDir, { recursive: true, force: true });
    }

    await disableTxChecksumOffload(lab, n1, 'eth0');
    assert.match((await lab.exec(n1, 'ethtool', ['-k', 'eth0'])).stdout, /tx-checksumming: off/);

    const tcp = await runIperf(lab, { server: n2, client: n1, address: '10.17.2.0', seconds: 2 });
    assert.ok(tcp.gbitPerSecond > 0, `TCP over kernel VXLAN: ${tcp.gbitPerSecond} Gbit/s`);
    assert.ok(tcp.seconds > 1.5);
    const udp = await runIperf(lab, { server: n2, client: n1, address: '10.17.2.0', seconds: 1, protocol: 'udp', udpPacketSize: 1400 });
    assert.ok(udp.packetsPerSecond !== null && udp.packetsPerSecond > 0, `UDP over kernel VXLAN: ${udp.packetsPerSecond} packets/s`);

    await removeKernelPeer(lab, n1, peerOf(vteps[1]!));
    assert.is((await lab.exec(n1, 'ip', ['route', 'show', '10.17.2.0/24'])).stdout.trim(), '');
    assert.not.match((await lab.exec(n1, 'bridge', ['fdb', 'show', 'dev', 'flannel.1'])).stdout, '0e:00:00:11:02:00');
    assert.not.match((await lab.exec(n1, 'ip', ['neigh', 'show', 'dev', 'flannel.1'])).stdout, '10.17.2.0');
    await rejects(() => ping(lab, n1, '10.17.2.0', { count: 1 }), /Network is unreachable/);
  } finally {
    await lab.destroy();
  }
});

test.run();
