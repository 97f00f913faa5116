// IPv6 masquerade on real nodes (issue 12): dual-stack vxtun agents over an IPv6 underlay with --ip-masq install
// flanneld's IPv6 rules beside the IPv4 ones (ip6tables FLANNEL-POSTRTG, or `table ip6 vxtun`); a dual-stack pod
// reaching an outside IPv6 host leaves as its node's IPv6 address, pod to pod over IPv6 keeps its own source, rules
// removed behind the agent's back come back, and a clean stop removes them.
import { once } from 'node:events';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { formatStatus } from '../../src/cli/commands/status';
import { MASQ_CHAIN, NFT_TABLE } from '../../src/control/ip-masq';
import { Overlay } from '../../src/lab/overlay';
import { addOutsideHost, routeToOutside } from '../../src/lab/outside';
import { type Pod, attachPod, podStateDir } from '../../src/lab/pods';
import { CommandError } from '../../src/lab/shell';
import { type InNamespace, type Lab, type LabNode, createLab } from '../../src/lab/topology';

const test = suite('IPv6 masquerade (flannel MasqIP6Rules) in a dual-stack lab');
const PORT = 7008;

// "Who do you see?" over IPv6: answers each datagram / connection with the source address it saw.
const SERVER = `
const dgram = require('node:dgram'), net = require('node:net');
const udp = dgram.createSocket({ type: 'udp6', ipv6Only: true });
udp.on('message', (m, r) => udp.send(r.address, r.port, r.address));
const tcp = net.createServer((s) => { s.on('error', () => {}); s.end(s.remoteAddress); });
udp.bind(${PORT}, '::', () => tcp.listen({ port: ${PORT}, host: '::', ipv6Only: true }, () => console.log('ready')));`;
const CLIENT = `
const [proto, address] = [process.argv[1], process.argv[2]];
setTimeout(() => { console.error('no answer from [' + address + ']:${PORT} over ' + proto); process.exit(2); }, 5000);
if (proto === 'udp') {
  const s = require('node:dgram').createSocket('udp6');
  s.on('message', (m) => { console.log(m.toString()); process.exit(0); });
  const ask = () => s.send('who', ${PORT}, address);
  ask();
  setInterval(ask, 300);
} else {
  let text = '';
  const c = require('node:net').connect(${PORT}, address);
  c.on('data', (d) => { text += d; });
  c.on('end', () => { console.log(text); process.exit(0); });
  c.on('error', (e) => { console.error(e.message); process.exit(3); });
}`;

async function startEcho6(lab: Lab, place: InNamespace): Promise<() => Promise<void>> {
  const child = lab.spawn(place, process.execPath, ['-e', SERVER], { stdio: 'pipe' });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => { output += chunk.toString(); if (output.includes('ready')) resolve(); });
    child.stderr!.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    child.once('exit', (code) => reject(new Error(`IPv6 echo in ${place.netns} exited (${code}): ${output}`)));
    setTimeout(() => reject(new Error(`IPv6 echo in ${place.netns} not ready: ${output}`)), 5000);
  });
  return async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'close');
    }
  };
}

async function seenSource6(lab: Lab, from: InNamespace, address: string, proto: 'udp' | 'tcp'): Promise<string> {
  try {
    return (await lab.exec(from, process.execPath, ['-e', CLIENT, proto, address], { timeoutMs: 10_000 })).stdout.trim();
  } catch (error) {
    if (error instanceof CommandError) throw new Error(`${proto} from ${from.netns} to [${address}]: ${error.stderr.trim() || error.message}`);
    throw error;
  }
}

function nat6(lab: Lab, node: LabNode): Promise<string> {
  return lab.exec(node, 'ip6tables-save', ['-t', 'nat']).then((r) => r.stdout);
}

async function until(what: string, check: () => Promise<boolean>, ms = 6000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

test('dual stack over an IPv6 underlay: pod -> outside IPv6 host is masqueraded to the node, pod -> pod keeps its source; restored; removed on stop', async () => {
  const lab = await createLab({ name: `vxt-6m${process.pid}`, nodes: 2, underlay6: true });
  let overlay: Overlay | undefined;
  try {
    overlay = await Overlay.create(lab, { backend: 'vxlan', ipv6: { underlay: true } });
    const [n1, n2] = lab.nodes as [LabNode, LabNode];
    await overlay.startAgent(n1, ['--ip-masq-resync', '1']);
    await overlay.startAgent(n2, ['--ip-masq-tool', 'nftables']);
    const s1 = await overlay.status(n1);
    const s2 = await overlay.status(n2);
    await overlay.waitForSubnets(n1, [{ subnet6: (await overlay.subnet6Of(n2))! }]);
    await overlay.waitForSubnets(n2, [{ subnet6: (await overlay.subnet6Of(n1))! }]);
    const network6 = overlay.network6!;

    // iptables on n1: the IPv6 chain beside the IPv4 one, with ff00::/8 and the IPv6 network.
    assert.match(overlay.log(n1), /ip masquerade rules installed.*rules="FLANNEL-POSTRTG \(nat table, iptables and ip6tables\)".*network6=fd00/);
    const rules6 = await nat6(lab, n1);
    assert.match(rules6, `-A POSTROUTING -m comment --comment "flanneld masq" -j ${MASQ_CHAIN}`);
    assert.match(rules6, `-A ${MASQ_CHAIN} -s ${network6} ! -d ff00::/8 -m comment --comment "flanneld masq" -j MASQUERADE`);
    assert.not.match(rules6, /10\.17\./, 'no IPv4 range in ip6tables');
    assert.match((await lab.exec(n1, 'iptables-save', ['-t', 'nat'])).stdout, /-A FLANNEL-POSTRTG -s 10\.17\.0\.0\/16 ! -d 224\.0\.0\.0\/4/, 'IPv4 rules still there');
    assert.match(formatStatus(s1), /^ip-masq  on, iptables v[\d.]+ \((nf_tables|legacy)\), FLANNEL-POSTRTG \(nat table, iptables and ip6tables\): installed$/m);
    // nftables on n2: table ip6 vxtun beside table ip vxtun.
    assert.is(s2.ipMasq?.enabled && s2.ipMasq.where, 'table ip vxtun, table ip6 vxtun');
    const nft6 = (await lab.exec(n2, 'nft', ['list', 'table', 'ip6', NFT_TABLE])).stdout;
    assert.match(nft6, `ip6 saddr ${network6} ip6 daddr != ff00::/8 masquerade`);

    const pod = (node: LabNode, i: number): Promise<Pod> =>
      attachPod(lab, node, i, { subnetEnvFile: overlay!.subnetFile(node), stateDir: podStateDir(overlay!.workDir, node.name) });
    const a1 = await pod(n1, 1);
    const b1 = await pod(n2, 1);
    assert.ok(a1.address6 !== undefined && b1.address6 !== undefined, 'dual-stack pods');

    const stopB1 = await startEcho6(lab, b1);
    try {
      for (const proto of ['udp', 'tcp'] as const) {
        assert.is(await seenSource6(lab, a1, b1.address6!, proto), a1.address6, `${proto} pod -> pod over IPv6 keeps the pod's address`);
      }
    } finally {
      await stopB1();
    }
    const stopA1 = await startEcho6(lab, a1);
    try {
      assert.is(await seenSource6(lab, b1, a1.address6!, 'udp'), b1.address6, 'nftables node: pod -> pod keeps its address');
    } finally {
      await stopA1();
    }

    const outside = await addOutsideHost(lab);
    assert.ok(outside.address6 !== undefined, 'the outside host has an IPv6 address in an IPv6-underlay lab');
    await routeToOutside(lab, n1, outside);
    await routeToOutside(lab, n2, outside);
    const stopOut = await startEcho6(lab, outside);
    try {
      assert.is(await seenSource6(lab, a1, outside.address6!, 'udp'), n1.underlayIp6, 'iptables node: pod -> outside leaves as the node');
      assert.is(await seenSource6(lab, a1, outside.address6!, 'tcp'), n1.underlayIp6);
      assert.is(await seenSource6(lab, b1, outside.address6!, 'tcp'), n2.underlayIp6, 'nftables node: pod -> outside leaves as the node');
    } finally {
      await stopOut();
    }

    // Removed behind the agent's back: back at the next check (1 s), said in the log, counted.
    await lab.exec(n1, 'ip6tables', ['-t', 'nat', '-F', MASQ_CHAIN]);
    await until('the IPv6 rules to come back', async () => (await nat6(lab, n1)).includes('ff00::/8'));
    assert.match(overlay.log(n1), /restored them.*ip6tables FLANNEL-POSTRTG/);
    await until('the restore to be counted', async () => ((await overlay!.status(n1)).ipMasq as { restored: number }).restored === 1);

    // A clean stop removes both families.
    await overlay.stopAgent(n1);
    assert.not.match(await nat6(lab, n1), MASQ_CHAIN, 'ip6tables chain gone');
    assert.not.match((await lab.exec(n1, 'iptables-save', ['-t', 'nat'])).stdout, MASQ_CHAIN, 'iptables chain gone');
    await overlay.stopAgent(n2);
    assert.not.match((await lab.exec(n2, 'nft', ['list', 'tables'])).stdout, /vxtun/, 'both nft tables gone');
  } catch (error) {
    if (overlay) for (const node of lab.nodes) process.stderr.write(`--- agent log ${node.name}\n${overlay.log(node)}`);
    throw error;
  } finally {
    await overlay?.close();
    await lab.destroy();
  }
});

test.run();
