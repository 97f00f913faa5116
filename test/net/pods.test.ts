// Pods as Kubernetes makes them, on vxtun nodes: pod namespaces attached by the real CNI plugins (bridge + host-local
// from /usr/lib/cni) configured from subnet.env as flannel's CNI plugin configures its delegate, with the agents'
// flanneld-style masquerade (--ip-masq). One lab per backend, several checks each, to keep the run short.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentStatus } from '../../src/control/agent';
import { fetchStatus } from '../../src/control/status-server';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { formatStatus } from '../../src/cli/commands/status';
import { MASQ_CHAIN, NFT_TABLE } from '../../src/control/ip-masq';
import { readSubnetEnv } from '../../src/control/subnet-env';
import { runIperf } from '../../src/lab/iperf';
import { CLI_PATH, type Overlay } from '../../src/lab/overlay';
import { addOutsideHost, routeToOutside } from '../../src/lab/outside';
import { ping } from '../../src/lab/ping';
import { type Pod, attachPod, detachPod, ipamAllocationDir, podStateDir } from '../../src/lab/pods';
import { CommandError, run } from '../../src/lab/shell';
import type { Lab, LabNode } from '../../src/lab/topology';
import { formatIPv4 } from '../../src/wire/address';
import { withOverlay } from '../support/overlay';
import { seenSource, startPeerEcho } from '../support/peer-echo';

const Pods = suite('pods attached by the CNI plugins, flannel masquerade');

async function startAgents(overlay: Overlay, nodes: readonly LabNode[], args: string[] = []): Promise<void> {
  for (const node of nodes) await overlay.startAgent(node, args);
  for (const node of nodes) await overlay.waitForRoutes(node, nodes.length - 1);
}

function podOn(lab: Lab, overlay: Overlay, node: LabNode, index: number): Promise<Pod> {
  return attachPod(lab, node, index, { subnetEnvFile: overlay.subnetFile(node), stateDir: podStateDir(overlay.workDir, node.name) });
}

async function linkMtu(lab: Lab, place: { netns: string }, dev: string): Promise<number> {
  return (JSON.parse((await lab.exec(place, 'ip', ['-j', 'link', 'show', 'dev', dev])).stdout) as Array<{ mtu: number }>)[0]!.mtu;
}

/** `ping -M do -s SIZE`: the text ping printed, and whether the reply came. */
async function dfPing(lab: Lab, from: Pod, to: string, size: number): Promise<{ ok: boolean; text: string }> {
  try {
    const { stdout, stderr } = await lab.exec(from, 'ping', ['-n', '-c', '1', '-W', '2', '-M', 'do', '-s', String(size), to]);
    return { ok: true, text: stdout + stderr };
  } catch (error) {
    if (!(error instanceof CommandError)) throw error;
    return { ok: false, text: error.stdout + error.stderr };
  }
}

/** The MTU contract: eth0 in the pod has FLANNEL_MTU; MTU-28 bytes of DF ping pass, one more is refused. */
async function assertPodMtu(lab: Lab, overlay: Overlay, from: Pod, to: Pod, expected: number): Promise<void> {
  const env = await readSubnetEnv(overlay.subnetFile(lab.node(1)));
  assert.is(env?.mtu, expected, 'FLANNEL_MTU');
  assert.is(await linkMtu(lab, from, 'eth0'), expected, `pod ${from.name} eth0 MTU = FLANNEL_MTU`);
  const fits = await dfPing(lab, from, to.address, expected - 28);
  assert.ok(fits.ok, `a ${expected - 28}-byte DF ping fits:\n${fits.text}`);
  const tooBig = await dfPing(lab, from, to.address, expected - 27);
  assert.not.ok(tooBig.ok, `a ${expected - 27}-byte DF ping must not get through:\n${tooBig.text}`);
  assert.match(tooBig.text, /message too long|Frag needed/i);
}

async function assertNoNatBetweenPods(lab: Lab, pairs: [Pod, Pod][], protos: ('udp' | 'tcp')[] = ['udp']): Promise<void> {
  for (const [from, to] of pairs) {
    const echo = await startPeerEcho(lab, to);
    try {
      for (const proto of protos) {
        assert.is(await seenSource(lab, from, to.address, proto), from.address, `${proto} ${from.name} -> ${to.name} keeps the pod's own source address`);
      }
    } finally {
      await echo.stop();
    }
  }
}

function natRules(lab: Lab, node: LabNode): Promise<string> {
  return lab.exec(node, 'iptables-save', ['-t', 'nat']).then((r) => r.stdout);
}

Pods('vxlan: pods keep their address across nodes and on one node, TCP and UDP, MTU, outside via masquerade, restart, DEL', async () => {
  await withOverlay('pv', 2, { backend: 'vxlan', port: 8472 }, async (lab, overlay) => {
    const [n1, n2] = lab.nodes;
    // A new namespace copies ip_forward from the host's: make it the fresh node's 0 whatever the host says.
    for (const node of lab.nodes) await lab.exec(node, 'sysctl', ['-qw', 'net.ipv4.ip_forward=0']);
    await startAgents(overlay, lab.nodes, ['--ip-masq-resync', '1']);
    // At start the node forwards nothing yet: the agent says so; the bridge plugin turns forwarding on with the first pod.
    assert.match(overlay.log(n1), /IP forwarding is off \(net\.ipv4\.ip_forward=0\).*sysctl -w net\.ipv4\.ip_forward=1/);
    assert.match(overlay.log(n1), /ip masquerade rules installed.*iptables v[\d.]+/);
    const env = await readSubnetEnv(overlay.subnetFile(n1));
    assert.is(env?.ipMasq, true, 'FLANNEL_IPMASQ=true');
    const a1 = await podOn(lab, overlay, n1, 1);
    const a2 = await podOn(lab, overlay, n1, 2);
    const b1 = await podOn(lab, overlay, n2, 1);
    const subnet1 = await overlay.subnetOf(n1);
    assert.is(a1.address, formatIPv4(subnet1.address + 2), 'host-local gives the first address after the gateway (.1, cni0)');
    assert.is(a1.gateway, formatIPv4(subnet1.address + 1));

    const status = await overlay.status(n1);
    assert.equal(status.node, { ipForward: true }, 'the bridge plugin turned forwarding on');
    assert.is(status.ipMasq?.enabled && status.ipMasq.state, 'installed');
    const text = formatStatus(status);
    assert.match(text, /^node     ip_forward on$/m);
    assert.match(text, /^ip-masq  on, iptables v[\d.]+ \((nf_tables|legacy)\), FLANNEL-POSTRTG \(nat table\): installed$/m);
    const rules = await natRules(lab, n1);
    assert.match(rules, `-A POSTROUTING -m comment --comment "flanneld masq" -j ${MASQ_CHAIN}`);
    assert.not.match(rules, /CNI-/, 'with FLANNEL_IPMASQ=true the bridge plugin adds no masquerade of its own');

    await assertNoNatBetweenPods(lab, [[a1, b1], [b1, a1]], ['udp', 'tcp']);
    await assertNoNatBetweenPods(lab, [[a1, a2]]);
    assert.is((await ping(lab, a2, b1.address, { count: 2, intervalSeconds: 0.1 })).received, 2);
    const tcp = await runIperf(lab, { server: b1, client: a1, address: b1.address, seconds: 2 });
    assert.ok(tcp.bytes > 1_000_000, `iperf3 TCP pod -> pod moved ${tcp.bytes} bytes`);
    const udp = await runIperf(lab, { server: b1, client: a1, address: b1.address, seconds: 1, protocol: 'udp', udpPacketSize: 1200 });
    assert.ok((udp.packetsPerSecond ?? 0) > 100, `iperf3 -u pod -> pod: ${udp.packetsPerSecond} datagrams/s received`);
    await assertPodMtu(lab, overlay, a1, b1, 1450);

    // Outside the cluster network: masqueraded to the node's underlay address, and the replies come back.
    const outside = await addOutsideHost(lab);
    await routeToOutside(lab, n1, outside);
    const echo = await startPeerEcho(lab, outside);
    try {
      assert.is(await seenSource(lab, a1, outside.address, 'udp'), n1.underlayIp, 'pod -> outside leaves as the node');
      assert.is(await seenSource(lab, a1, outside.address, 'tcp'), n1.underlayIp);
    } finally {
      await echo.stop();
    }

    // Rules removed behind the agent's back come back at the next check, said once in the log.
    await lab.exec(n1, 'iptables', ['-t', 'nat', '-F', MASQ_CHAIN]);
    const deadline = Date.now() + 5000;
    while (!/-A FLANNEL-POSTRTG -s 10\.17\.0\.0\/16 -d 10\.17\.0\.0\/16/.test(await natRules(lab, n1)) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.is((overlay.log(n1).match(/masquerade rules were removed by something else: restored them/g) ?? []).length, 1);
    assert.is(((await overlay.status(n1)).ipMasq as { restored: number }).restored, 1);

    // An agent restart with pods attached: same subnet, rules gone on stop and back on start, traffic resumes.
    const before = (await overlay.status(n2)).lease.subnet;
    await overlay.stopAgent(n2);
    assert.not.match(await natRules(lab, n2), MASQ_CHAIN, 'a clean stop removes the rules');
    await overlay.startAgent(n2, ['--ip-masq-resync', '1']);
    assert.is((await overlay.waitForRoutes(n2, 1)).lease.subnet, before, 'the restarted agent keeps its subnet');
    await assertNoNatBetweenPods(lab, [[a1, b1], [b1, a1]]);

    // CNI DEL: the veth, the address allocation and the attachment go; a second DEL is fine.
    const veths = async (): Promise<string[]> =>
      (JSON.parse((await lab.exec(n1, 'ip', ['-j', 'link', 'show', 'master', 'cni0'])).stdout) as Array<{ ifname: string }>).map((l) => l.ifname);
    assert.is((await veths()).length, 2);
    const stateDir = podStateDir(overlay.workDir, n1.name);
    assert.ok(existsSync(`${ipamAllocationDir(stateDir)}/${a2.address}`), 'host-local recorded the allocation');
    await detachPod(a2, stateDir);
    await detachPod(a2, stateDir);
    await lab.removeNamespace(a2.netns);
    assert.is((await veths()).length, 1, 'one veth left on cni0: the other pod\'s');
    assert.not.ok(existsSync(`${ipamAllocationDir(stateDir)}/${a2.address}`), 'the allocation file is gone');
    assert.equal(readdirSync(ipamAllocationDir(stateDir)).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)), [a1.address]);
    assert.not.match(await natRules(lab, n1), /CNI-/);
  });
});

Pods('ipip: --no-ip-masq lets the bridge plugin NAT pod-to-pod (the bug); DEL removes its rules; with --ip-masq pods keep their address', async () => {
  await withOverlay('pi', 2, { backend: 'ipip' }, async (lab, overlay) => {
    const [n1, n2] = lab.nodes;
    await startAgents(overlay, lab.nodes, ['--no-ip-masq']);
    assert.is((await readSubnetEnv(overlay.subnetFile(n1)))?.ipMasq, false, 'FLANNEL_IPMASQ=false');
    assert.equal((await overlay.status(n1)).ipMasq, { enabled: false });
    let a = await podOn(lab, overlay, n1, 1);
    let b = await podOn(lab, overlay, n2, 1);
    assert.match(await natRules(lab, n1), /-j CNI-/, 'the bridge plugin masquerades (ipMasq = !FLANNEL_IPMASQ)');
    const echo = await startPeerEcho(lab, b);
    try {
      const tunAddress = formatIPv4((await overlay.subnetOf(n1)).address);
      assert.is(await seenSource(lab, a, b.address), tunAddress, "without flanneld's masquerade, the remote pod sees the sender's TUN address");
    } finally {
      await echo.stop();
    }
    for (const pod of [a, b]) {
      await detachPod(pod, podStateDir(overlay.workDir, pod.node));
      await lab.removeNamespace(pod.netns);
    }
    for (const node of lab.nodes) assert.not.match(await natRules(lab, node), /CNI-/, `CNI DEL removed the bridge plugin's rules in ${node.name}`);

    for (const node of lab.nodes) await overlay.stopAgent(node);
    await startAgents(overlay, lab.nodes);
    a = await podOn(lab, overlay, n1, 2);
    b = await podOn(lab, overlay, n2, 2);
    await assertNoNatBetweenPods(lab, [[a, b], [b, a]], ['udp', 'tcp']);
    await assertPodMtu(lab, overlay, a, b, 1480);
  });
});

Pods('host-gw with nftables masquerade: pods keep their address across nodes; outside via the node; the table goes on stop', async () => {
  await withOverlay('ph', 2, { backend: 'host-gw' }, async (lab, overlay) => {
    const [n1, n2] = lab.nodes;
    await startAgents(overlay, lab.nodes, ['--ip-masq-tool', 'nftables']);
    assert.match(overlay.log(n1), /ip masquerade rules installed.*nftables v[\d.]+.*table ip vxtun/);
    const a = await podOn(lab, overlay, n1, 1);
    const b = await podOn(lab, overlay, n2, 1);
    assert.match((await lab.exec(n1, 'nft', ['list', 'table', 'ip', NFT_TABLE])).stdout, /masquerade/);
    assert.is((await overlay.status(n1)).ipMasq?.enabled && ((await overlay.status(n1)).ipMasq as { state: string }).state, 'installed');
    await assertNoNatBetweenPods(lab, [[a, b], [b, a]], ['udp', 'tcp']);
    await assertPodMtu(lab, overlay, a, b, 1500);
    const outside = await addOutsideHost(lab);
    await routeToOutside(lab, n2, outside);
    const echo = await startPeerEcho(lab, outside);
    try {
      assert.is(await seenSource(lab, b, outside.address), n2.underlayIp, 'pod -> outside leaves as the node (nftables masquerade)');
    } finally {
      await echo.stop();
    }
    await overlay.stopAgent(n1);
    try {
      await lab.exec(n1, 'nft', ['list', 'table', 'ip', NFT_TABLE]);
      assert.unreachable('table ip vxtun should be gone after a clean stop');
    } catch (error) {
      assert.instance(error, CommandError);
    }
  });
});

Pods('vxlan DirectRouting: pods on the same L2 subnet reach each other directly, without NAT', async () => {
  await withOverlay('pd', 2, { backend: 'vxlan', directRouting: true }, async (lab, overlay) => {
    const [n1, n2] = lab.nodes;
    await startAgents(overlay, lab.nodes);
    const a = await podOn(lab, overlay, n1, 1);
    const b = await podOn(lab, overlay, n2, 1);
    const routes = (await overlay.status(n1)).routes;
    assert.equal(routes.map((r) => r.encap), ['direct']);
    const sentBefore = ((await overlay.status(n1)).counters as { underlayOut: { packets: number } }).underlayOut.packets;
    await assertNoNatBetweenPods(lab, [[a, b], [b, a]], ['udp', 'tcp']);
    const sentAfter = ((await overlay.status(n1)).counters as { underlayOut: { packets: number } }).underlayOut.packets;
    assert.is(sentAfter, sentBefore, 'no packet went through the tunnel');
    // Direct routing sends the pods' packets at the underlay MTU; subnet.env still says the tunnel's (flannel's choice).
    assert.is(await linkMtu(lab, a, 'eth0'), 1450);
  });
});

Pods('no iptables and no nft on the node: the agent says what to install and forwards without masquerade', async () => {
  await withOverlay('pn', 1, { backend: 'vxlan' }, async (lab, overlay) => {
    const node = lab.node(1);
    // A PATH with `ip` only (the agent's one other command): as on a node where neither firewall tool is installed.
    const bin = mkdtempSync(join(tmpdir(), 'vxtun-nofw-'));
    try {
      symlinkSync((await run('sh', ['-c', 'command -v ip'])).stdout.trim(), join(bin, 'ip'));
      const socket = join(overlay.workDir, 'nofw.sock');
      const logFile = join(overlay.workDir, 'nofw.log');
      const agent = lab.spawn(node, process.execPath, [
        CLI_PATH, 'agent', '--store', overlay.storeUrl, '--public-ip', node.underlayIp,
        '--subnet-file', overlay.subnetFile(node), '--status-socket', socket,
      ], { logFile, env: { ...process.env, PATH: bin } });
      let status: AgentStatus | undefined;
      for (let i = 0; i < 100 && status === undefined && agent.exitCode === null; i++) {
        status = (await fetchStatus(socket, 1000).catch(() => undefined)) as AgentStatus | undefined;
        if (status === undefined) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const log = readFileSync(logFile, 'utf8');
      assert.ok(status !== undefined, `the agent runs:\n${log}`);
      assert.equal(status!.ipMasq, {
        enabled: true,
        state: 'unavailable',
        problem: status!.ipMasq!.enabled ? status!.ipMasq!.problem : undefined,
        restored: 0,
      });
      assert.match(log, /ip masquerade is off.*neither iptables nor nft is installed.*apt-get install iptables \(or nftables\)/);
      assert.is((await readSubnetEnv(overlay.subnetFile(node)))?.ipMasq, true, 'FLANNEL_IPMASQ still says the node masquerades, as flanneld --ip-masq writes it');
      assert.ok(status!.tun !== undefined && status!.tun.mtu === 1450, 'the data plane is up');
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });
});

Pods.run();
