// The lab's IPv6 kernel-VXLAN helper, proved kernel to kernel before vxtun meets it (issue 12): two nodes on an IPv6
// underlay (their IPv4 addresses removed, so nothing but IPv6 can carry the VXLAN), each with a `flannel-v6.1` device
// programmed as flanneld does for the other's IPv6 lease. ping6 and TCP (iperf3) cross; removing a peer stops them.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { runIperf } from '../../src/lab/iperf';
import {
  addKernelPeer6, createKernelVtep6, kernelVtep6Name, type KernelPeer6, removeKernelPeer6, VXLAN_OVERHEAD6,
} from '../../src/lab/kernel-vxlan';
import { ping } from '../../src/lab/ping';
import { createLab, type Lab } from '../../src/lab/topology';

const test = suite('kernel vxlan over IPv6, as flannel programs flannel-v6.<VNI>');

const SUBNETS = ['fd00:17:0:1::/64', 'fd00:17:0:2::/64'];
const MACS = ['0e:00:00:00:06:01', '0e:00:00:00:06:02'];
let lab: Lab | undefined;

test.after(async () => {
  await lab?.destroy();
});

test('two flannel-v6.1 devices: ping6 and TCP between them over an IPv6-only underlay, nothing after the peer is removed', async () => {
  lab = await createLab({ name: `vxt-kv6${process.pid}`, nodes: 2, underlay6: true });
  const [n1, n2] = [lab.node(1), lab.node(2)];
  assert.is(n1.underlayIp6, '2001:db8:1::11');
  assert.is(n2.underlayIp6, '2001:db8:1::12');
  for (const node of [n1, n2]) await lab.exec(node, 'ip', ['-4', 'addr', 'flush', 'dev', node.underlayDev]);

  const vteps = [];
  for (const [i, node] of [n1, n2].entries()) {
    vteps.push(await createKernelVtep6(lab, node, { vni: 1, vtepMac: MACS[i], address: SUBNETS[i] }));
  }
  assert.is(vteps[0].device, 'flannel-v6.1');
  assert.is(vteps[0].address, 'fd00:17:0:1::');
  assert.is(vteps[0].mtu, 1500 - VXLAN_OVERHEAD6);
  const details = JSON.parse((await lab.exec(n1, 'ip', ['-d', '-j', 'link', 'show', kernelVtep6Name(1)])).stdout)[0];
  assert.is(details.linkinfo.info_kind, 'vxlan');
  assert.is(details.linkinfo.info_data.local6 ?? details.linkinfo.info_data.local, '2001:db8:1::11', 'the device sends from the IPv6 underlay');

  const peerOf = (i: number): KernelPeer6 => ({ subnet: SUBNETS[i], vtepMac: MACS[i], publicIpv6: [n1, n2][i].underlayIp6!, vni: 1 });
  await addKernelPeer6(lab, n1, peerOf(1));
  await addKernelPeer6(lab, n2, peerOf(0));
  // Applied twice: replace semantics, as flannel re-adding a lease.
  await addKernelPeer6(lab, n1, peerOf(1));

  const routes = (await lab.exec(n1, 'ip', ['-6', 'route', 'show', 'dev', 'flannel-v6.1'])).stdout;
  assert.match(routes, /fd00:17:0:2::\/64 via fd00:17:0:2:: .*onlink/);
  const neigh = (await lab.exec(n1, 'ip', ['-6', 'neigh', 'show', 'dev', 'flannel-v6.1'])).stdout;
  assert.match(neigh, /fd00:17:0:2:: lladdr 0e:00:00:00:06:02 PERMANENT/);
  const fdb = (await lab.exec(n1, 'bridge', ['fdb', 'show', 'dev', 'flannel-v6.1'])).stdout;
  assert.match(fdb, /0e:00:00:00:06:02 dst 2001:db8:1::12 self permanent/);

  const pings = await ping(lab, n1, 'fd00:17:0:2::', { count: 3, intervalSeconds: 0.2 });
  assert.is(pings.received, 3, 'ping6 crosses the two kernel VTEPs');
  // A full-size inner packet: the device MTU (1430) already leaves room for the 70 bytes of IPv6 VXLAN headers.
  const big = await ping(lab, n1, 'fd00:17:0:2::', { count: 2, intervalSeconds: 0.2, size: 1430 - 48, dontFragment: true });
  assert.is(big.received, 2, 'a 1430-byte inner packet fits the 1500-byte IPv6 underlay whole');

  const tcp = await runIperf(lab, { server: n2, client: n1, address: 'fd00:17:0:2::', seconds: 1 });
  assert.ok(tcp.bytes > 1_000_000, `TCP over IPv6 VXLAN carried ${tcp.bytes} bytes`);

  await removeKernelPeer6(lab, n1, peerOf(1));
  const after = await ping(lab, n1, 'fd00:17:0:2::', { count: 1, replyTimeoutSeconds: 1 }).then(
    (result) => `${result.received} received`,
    (error: Error) => error.message,
  );
  assert.match(after, /Network is unreachable/, 'no route left for the removed lease');
  assert.not.match((await lab.exec(n1, 'ip', ['-6', 'neigh', 'show', 'dev', 'flannel-v6.1'])).stdout, /fd00:17:0:2::/);
  assert.not.match((await lab.exec(n1, 'bridge', ['fdb', 'show', 'dev', 'flannel-v6.1'])).stdout, /0e:00:00:00:06:02/);
});

test('createKernelVtep6 refuses a node without an IPv6 underlay', async () => {
  const plain = await createLab({ name: `vxt-kv6b${process.pid}`, nodes: 1 });
  try {
    let message = '';
    await createKernelVtep6(plain, plain.node(1), { vni: 1, vtepMac: MACS[0], address: SUBNETS[0] }).catch((e: Error) => (message = e.message));
    assert.match(message, /no IPv6 underlay address/);
  } finally {
    await plain.destroy();
  }
});

test.run();
