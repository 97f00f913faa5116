// Path MTU on a routed underlay whose hop toward one node is 1400 bytes and whose router drops every ICMP packet:
// vxtun's outer DF (--df unset|set|inherit) against the kernel's own VXLAN device on the same path.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { runIperf } from '../../src/lab/iperf';
import { addKernelPeer, createKernelVtep, VXLAN_OVERHEAD } from '../../src/lab/kernel-vxlan';
import { ping } from '../../src/lab/ping';
import { routeThroughHub } from '../../src/lab/routed-underlay';
import { formatCidr, formatIPv4 } from '../../src/wire/address';
import { withOverlay } from '../support/overlay';

const Pmtu = suite('path MTU: 1400-byte hop, ICMP filtered');

/** A 1400-byte IPv4 packet (20 IP + 8 ICMP + 1372): 1450 bytes once in VXLAN, above the 1400-byte hop. */
const BIG = 1372;

Pmtu('vxtun --df unset (default) fragments like kernel VXLAN; --df set black-holes; --df inherit follows the inner DF', async () => {
  await withOverlay('pmtu', 3, { backend: 'vxlan' }, async (lab, overlay) => {
    const path = await routeThroughHub(lab, { narrowMtu: 1400, dropIcmp: true });
    const { near, far } = path;
    await overlay.startAgent(near);
    await overlay.startAgent(far);
    await overlay.waitForRoutes(near, 1);
    await overlay.waitForRoutes(far, 1);
    const nearSubnet = await overlay.subnetOf(near);
    const farSubnet = await overlay.subnetOf(far);
    const target = formatIPv4(farSubnet.address);
    assert.is((await overlay.status(near)).underlay.df, 'unset');

    // Default: DF clear outside, the router fragments, the far kernel reassembles.
    assert.is((await ping(lab, near, target, { count: 3, intervalSeconds: 0.1 })).received, 3, 'small packets cross the routed path');
    assert.is((await ping(lab, near, target, { count: 5, size: BIG, dontFragment: true })).received, 5, 'DF ping of 1400 bytes, --df unset');
    const tcp = await runIperf(lab, { server: far, client: near, address: target, seconds: 2 });
    assert.ok(tcp.bytes > 1_000_000, `TCP through the 1400-byte hop moved ${tcp.bytes} bytes`);
    assert.is((await path.icmpDropped()).fragNeeded, 0, 'no outer packet asked the router for fragmentation-needed');

    // --df set: every outer packet has DF, the router drops the big ones and its ICMP is filtered: a black hole.
    await overlay.stopAgent(near);
    await overlay.startAgent(near, ['--df', 'set']);
    await overlay.waitForRoutes(near, 1);
    assert.is((await ping(lab, near, target, { count: 3, intervalSeconds: 0.1 })).received, 3, 'small packets still cross');
    assert.is((await ping(lab, near, target, { count: 5, size: BIG, dontFragment: true, replyTimeoutSeconds: 0.5 })).received, 0, 'DF ping of 1400 bytes, --df set');
    assert.is((await ping(lab, near, target, { count: 3, size: BIG, dontFragment: false, replyTimeoutSeconds: 0.5 })).received, 0, 'even an inner packet without DF');
    const dropped = (await path.icmpDropped()).fragNeeded;
    assert.ok(dropped >= 8, `the router's fragmentation-needed were dropped (${dropped})`);
    // UDP GSO batches follow the socket's setting too: TCP super-packets leave as DF segments and die at the hop.
    const received = (await overlay.status(far)).counters as { tunOut: { bytes: number } };
    await runIperf(lab, { server: far, client: near, address: target, seconds: 1 }).catch(() => undefined);
    const after = (await overlay.status(far)).counters as { tunOut: { bytes: number } };
    assert.ok(after.tunOut.bytes - received.tunOut.bytes < 500_000, `TCP with --df set delivered ${after.tunOut.bytes - received.tunOut.bytes} bytes`);
    assert.ok((await path.icmpDropped()).fragNeeded > dropped, 'the GSO segments carried DF');

    // --df inherit: the inner DF bit decides, per run of packets.
    await overlay.stopAgent(near);
    await overlay.startAgent(near, ['--df', 'inherit']);
    await overlay.waitForRoutes(near, 1);
    assert.is((await ping(lab, near, target, { count: 5, size: BIG, dontFragment: false })).received, 5, 'inner DF clear: fragmented outside');
    assert.is((await ping(lab, near, target, { count: 5, size: BIG, dontFragment: true, replyTimeoutSeconds: 0.5 })).received, 0, 'inner DF set: DF outside');

    // The kernel's VXLAN device on the same path, each end with its underlay MTU - 50 as flannel sets it (neither end knows of the hop).
    await overlay.stopAgent(near);
    await overlay.stopAgent(far);
    const vtep = (node: typeof near, subnet: typeof nearSubnet, mac: string, mtu: number) =>
      createKernelVtep(lab, node, { vni: overlay.vni, port: overlay.port, vtepMac: mac, address: formatIPv4(subnet.address), mtu });
    await vtep(near, nearSubnet, '0e:00:00:00:aa:01', lab.mtu - VXLAN_OVERHEAD);
    await vtep(far, farSubnet, '0e:00:00:00:aa:02', lab.mtu - VXLAN_OVERHEAD);
    await addKernelPeer(lab, near, { subnet: formatCidr(farSubnet), vtepMac: '0e:00:00:00:aa:02', publicIp: far.underlayIp, vni: overlay.vni });
    await addKernelPeer(lab, far, { subnet: formatCidr(nearSubnet), vtepMac: '0e:00:00:00:aa:01', publicIp: near.underlayIp, vni: overlay.vni });
    assert.is((await ping(lab, near, target, { count: 5, size: BIG, dontFragment: true })).received, 5, 'kernel VXLAN (df unset by default)');
    await lab.exec(near, 'ip', ['link', 'set', `flannel.${overlay.vni}`, 'type', 'vxlan', 'df', 'set']);
    assert.is((await ping(lab, near, target, { count: 5, size: BIG, dontFragment: true, replyTimeoutSeconds: 0.5 })).received, 0, 'kernel VXLAN with df set');
  });
});

Pmtu('IP-in-IP (raw protocol-4 socket): DF clear by default, DF on every packet with --df set', async () => {
  await withOverlay('pmip', 3, { backend: 'ipip' }, async (lab, overlay) => {
    const path = await routeThroughHub(lab, { narrowMtu: 1400, dropIcmp: true });
    const { near, far } = path;
    await overlay.startAgent(near);
    await overlay.startAgent(far);
    await overlay.waitForRoutes(near, 1);
    await overlay.waitForRoutes(far, 1);
    const target = formatIPv4((await overlay.subnetOf(far)).address);
    // 1400 inner + 20 outer = 1420 bytes, above the hop.
    assert.is((await ping(lab, near, target, { count: 5, size: BIG, dontFragment: true })).received, 5, 'DF ping of 1400 bytes, --df unset');
    const tcp = await runIperf(lab, { server: far, client: near, address: target, seconds: 2 });
    assert.ok(tcp.bytes > 1_000_000, `TCP through the 1400-byte hop moved ${tcp.bytes} bytes`);
    assert.is((await path.icmpDropped()).fragNeeded, 0);
    await overlay.stopAgent(near);
    await overlay.startAgent(near, ['--df', 'set']);
    await overlay.waitForRoutes(near, 1);
    assert.is((await ping(lab, near, target, { count: 3, intervalSeconds: 0.1 })).received, 3, 'small packets still cross');
    assert.is((await ping(lab, near, target, { count: 5, size: BIG, dontFragment: true, replyTimeoutSeconds: 0.5 })).received, 0, 'DF ping of 1400 bytes, --df set');
    assert.ok((await path.icmpDropped()).fragNeeded >= 5, 'the router asked for fragmentation and its ICMP was dropped');
  });
});

Pmtu.run();
