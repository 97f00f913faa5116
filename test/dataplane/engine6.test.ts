import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseMac } from '../../src/wire/address';
import { formatIPv6, ipv6Words } from '../../src/wire/address6';
import { parseEthernet } from '../../src/wire/ethernet';
import {
  ICMPV6_DEST_UNREACHABLE,
  ICMPV6_NEIGHBOR_ADVERTISEMENT,
  ICMPV6_NEIGHBOR_SOLICITATION,
  ICMPV6_NO_ROUTE,
  ICMPV6_PACKET_TOO_BIG,
  NA_FLAG_OVERRIDE,
  NA_FLAG_SOLICITED,
  icmpv6Checksum,
  parseIcmpv6,
} from '../../src/wire/icmpv6';
import { IPPROTO_ICMPV6, IPPROTO_DSTOPTS, emitIpv6, parseIpv6 } from '../../src/wire/ipv6';
import { parseVxlan } from '../../src/wire/vxlan';
import { PORT, VNI, vxlanFrame } from '../support/fake-nodes';
import { type DualNode, NETWORK6, dualPair, echoRequest6, ip6, udp6Packet } from '../support/fake-nodes6';
import { echoRequest, ip } from '../support/packets';

async function settle(): Promise<void> {
  for (let turn = 0; turn < 200; turn++) await new Promise((resolve) => setImmediate(resolve));
}

function start(...nodes: DualNode[]): void {
  for (const n of nodes) n.engine.start();
}

const E6 = suite('engine: IPv6');

for (const over of [4, 6] as const) {
  E6(`IPv6 over the IPv${over} underlay: packets cross both ways unchanged, IPv4 beside them`, async () => {
    const { a, b } = dualPair(over);
    start(a, b);
    const ping = echoRequest6(ip6('fd00:10:244:1::5'), ip6('fd00:10:244:2::7'));
    const pong = echoRequest6(ip6('fd00:10:244:2::7'), ip6('fd00:10:244:1::5'), 100);
    const ping4 = echoRequest(ip('10.17.1.5'), ip('10.17.2.7'));
    a.tun.inject(ping);
    a.tun.inject(ping4);
    b.tun.inject(pong);
    await settle();
    // Two underlay sockets deliver in their own order: compare the sets.
    const sorted = (bufs: Buffer[]): string[] => bufs.map((x) => x.toString('hex')).sort();
    assert.equal(sorted(b.tun.written), sorted([ping, ping4]));
    assert.equal(a.tun.written, [pong]);
    assert.is(a.engine.counters.drops.total + b.engine.counters.drops.total, 0, JSON.stringify(a.engine.counters.drops.toJSON()));
  });

  E6(`IPv6 over the IPv${over} underlay: the wire carries VXLAN, inner Ethernet 0x86DD between the v6 VTEP MACs`, async () => {
    const { net, net6, a, b } = dualPair(over);
    start(a);
    a.tun.inject(echoRequest6(ip6('fd00:10:244:1::5'), ip6('fd00:10:244:2::7')));
    await settle();
    const sent = over === 6 ? net6.log : net.log;
    assert.is(sent.length, 1);
    assert.is(over === 6 ? net.log.length : net6.log.length, 0, 'nothing on the other underlay');
    const d = sent[0];
    assert.is(d.to, over === 6 ? b.underlayIp6 : b.underlayIp);
    assert.is(d.port, PORT);
    assert.equal(parseVxlan(d.data), { vni: VNI });
    assert.equal(parseEthernet(d.data, 8), { destination: b.mac6, source: a.mac6, etherType: 0x86dd });
  });

  E6(`IPv6 over the IPv${over} underlay: Packet Too Big back into the TUN with the MTU of the path`, async () => {
    const { a, b } = dualPair(over);
    start(a, b);
    const mtu = over === 6 ? 1430 : 1450;
    const fits = echoRequest6(ip6('fd00:10:244:1::5'), ip6('fd00:10:244:2::7'), mtu - 48);
    const big = echoRequest6(ip6('fd00:10:244:1::5'), ip6('fd00:10:244:2::7'), mtu - 47);
    a.tun.inject(fits);
    a.tun.inject(big);
    await settle();
    assert.equal(b.tun.written, [fits], 'exactly the MTU passes');
    assert.is(a.engine.counters.drops.get('mtu', 'too-big'), 1);
    assert.is(a.tun.written.length, 1);
    const reply = a.tun.written[0];
    assert.is(reply.length, 1280, 'as much of the packet as fits in 1280 bytes');
    const ipr = parseIpv6(reply);
    assert.is(formatIPv6(ipr.source), 'fd00:10:244:2::', 'from the remote subnet address, never a local one');
    assert.is(formatIPv6(ipr.destination), 'fd00:10:244:1::5');
    assert.equal(parseIcmpv6(reply, 0, 40, reply.length - 40), { type: ICMPV6_PACKET_TOO_BIG, code: 0, mtu, payloadLength: 1232 });
    assert.equal(reply.subarray(48, 88), big.subarray(0, 40));
    assert.is(a.engine.counters.icmpErrors, 1);
  });
}

E6('no route: Destination Unreachable (no route) from the cluster IPv6 network address', async () => {
  const { a } = dualPair(4);
  start(a);
  const lost = udp6Packet(ip6('fd00:10:244:1::5'), ip6('fd00:10:244:99::1'), 1000, 53);
  a.tun.inject(lost);
  await settle();
  assert.is(a.engine.counters.drops.get('route6', 'no-match'), 1);
  assert.is(a.tun.written.length, 1);
  const reply = a.tun.written[0];
  const ipr = parseIpv6(reply);
  assert.is(ipr.source, NETWORK6.address);
  assert.is(formatIPv6(ipr.destination), 'fd00:10:244:1::5');
  assert.equal(parseIcmpv6(reply, 0, 40, reply.length - 40), { type: ICMPV6_DEST_UNREACHABLE, code: ICMPV6_NO_ROUTE, payloadLength: lost.length });
  assert.equal(reply.subarray(48), lost);
});

E6('no error about an ICMPv6 error, nor about a packet from a multicast source; errors are rate-limited', async () => {
  const { a } = dualPair(4);
  start(a);
  const err = echoRequest6(ip6('fd00:10:244:1::5'), ip6('fd00:10:244:99::1'));
  err[40] = ICMPV6_DEST_UNREACHABLE;
  err.writeUInt16BE(0, 42);
  err.writeUInt16BE(icmpv6Checksum(err, 0, 40, err.length - 40), 42);
  a.tun.inject(err);
  a.tun.inject(udp6Packet(ip6('ff02::1'), ip6('fd00:10:244:99::1'), 1, 2));
  await settle();
  assert.is(a.engine.counters.drops.get('route6', 'no-match'), 2);
  assert.is(a.tun.written.length, 0);
  for (let i = 0; i < 150; i++) a.tun.inject(udp6Packet(ip6('fd00:10:244:1::5'), ip6('fd00:10:244:99::1'), 1000 + i, 53));
  await settle();
  assert.is(a.tun.written.length, 100, '100 errors a second at most, as for IPv4');
  assert.is(a.engine.counters.drops.get('icmp', 'rate-limited'), 50);
});

E6('missing neighbor or FDB entries are counted drops, as for IPv4', async () => {
  const { a, b } = dualPair(4);
  start(a);
  a.engine.tables.fdb.delete(b.mac6);
  a.tun.inject(echoRequest6(ip6('fd00:10:244:1::5'), ip6('fd00:10:244:2::7')));
  await settle();
  assert.is(a.engine.counters.drops.get('fdb6', 'missing'), 1);
  a.engine.tables.neighbors6.clear();
  a.tun.inject(echoRequest6(ip6('fd00:10:244:1::5'), ip6('fd00:10:244:2::7')));
  await settle();
  assert.is(a.engine.counters.drops.get('neighbor6', 'missing'), 1);
});

E6('a malformed IPv6 packet from the TUN is a counted drop (header, extension chain)', async () => {
  const { a } = dualPair(4);
  start(a);
  const short = echoRequest6(ip6('fd00:10:244:1::5'), ip6('fd00:10:244:2::7')).subarray(0, 30);
  const lying = echoRequest6(ip6('fd00:10:244:1::5'), ip6('fd00:10:244:2::7'));
  lying.writeUInt16BE(500, 4);
  const chain = echoRequest6(ip6('fd00:10:244:1::5'), ip6('fd00:10:244:2::7'), 8);
  chain[6] = IPPROTO_DSTOPTS;
  chain[41] = 200; // 1608 bytes of options in a 16-byte payload
  a.tun.inject(short);
  a.tun.inject(lying);
  a.tun.inject(chain);
  await settle();
  assert.is(a.engine.counters.drops.get('tun-ipv6', 'truncated'), 1);
  assert.is(a.engine.counters.drops.get('tun-ipv6', 'bad-payload-length'), 1);
  assert.is(a.engine.counters.drops.get('tun-ipv6', 'truncated-extension'), 1);
});

/** A VXLAN frame carrying `inner` (an IPv6 packet) from node `from` to node `to`'s v6 VTEP MAC. */
function frame6(inner: Buffer, from: DualNode, to: DualNode, dstMac = to.mac6): Buffer {
  return vxlanFrame(inner, from.mac6, dstMac, VNI, 0x86dd);
}

for (const over of [4, 6] as const) {
  E6(`inbound over IPv${over}: the IPv4 decap checks apply to IPv6 (known VTEP, source in its subnet, destination ours)`, async () => {
    const { a, b } = dualPair(over);
    start(b);
    const inject = (data: Buffer, from: 'a' | 'stranger'): void => {
      if (over === 6) b.socket6!.inject(data, from === 'a' ? a.underlayIp6 : ip6('2001:db8::99'));
      else b.socket.inject(data, from === 'a' ? a.underlayIp : ip('192.0.2.99'), PORT);
    };
    const good = echoRequest6(ip6('fd00:10:244:1::5'), ip6('fd00:10:244:2::7'));
    inject(frame6(good, a, b), 'a');
    inject(frame6(good, a, b), 'stranger');
    inject(frame6(echoRequest6(ip6('fd00:10:244:3::5'), ip6('fd00:10:244:2::7')), a, b), 'a');
    inject(frame6(echoRequest6(ip6('fd00:10:244:1::5'), ip6('fd00:10:244:3::7')), a, b), 'a');
    inject(frame6(echoRequest6(ip6('fd00:10:244:1::5'), ip6('fd00:10:244:2::7')).subarray(0, 39), a, b), 'a');
    inject(frame6(good, a, b, b.mac), 'a');
    const padded = Buffer.concat([good, Buffer.alloc(10)]);
    inject(frame6(padded, a, b), 'a');
    await settle();
    assert.equal(b.tun.written, [good, good], 'the padded copy is trimmed to its payload length');
    const d = b.engine.counters.drops;
    assert.is(d.get('underlay', 'unknown-vtep'), 1);
    assert.is(d.get('inner-ipv6', 'spoofed-source'), 1);
    assert.is(d.get('inner-ipv6', 'not-for-us'), 1);
    assert.is(d.get('inner-ipv6', 'truncated'), 1);
    assert.is(d.get('ethernet', 'not-our-mac'), 1, 'IPv6 to the IPv4 VTEP MAC');
    assert.is(d.total, 5);
  });

  E6(`Neighbor Solicitation for our v6 VTEP address over IPv${over}: answered with an Advertisement to the asker`, async () => {
    const { net, net6, a, b } = dualPair(over);
    start(b);
    const kernelMac = parseMac('0a:00:00:00:00:01');
    const ns = Buffer.alloc(72);
    emitIpv6({ source: ip6('fd00:10:244:1::'), destination: ip6('ff02::1:ff00:0'), nextHeader: IPPROTO_ICMPV6, payloadLength: 32, hopLimit: 255 }, ns, 0);
    ns[40] = ICMPV6_NEIGHBOR_SOLICITATION;
    ns.writeUInt32BE(0, 44);
    for (const [i, w] of ipv6Words(b.subnet6.address).entries()) ns.writeUInt32BE(w, 48 + 4 * i);
    ns[64] = 1;
    ns[65] = 1;
    ns.writeUIntBE(kernelMac, 66, 6);
    ns.writeUInt16BE(icmpv6Checksum(ns, 0, 40, 32), 42);
    const f = vxlanFrame(ns, kernelMac, parseMac('33:33:ff:00:00:00'), VNI, 0x86dd);
    if (over === 6) b.socket6!.inject(f, a.underlayIp6);
    else b.socket.inject(f, a.underlayIp, PORT);
    // One for another address: not ours to answer.
    const other = Buffer.from(ns);
    other[63] = 9;
    other.writeUInt16BE(0, 42);
    other.writeUInt16BE(icmpv6Checksum(other, 0, 40, 32), 42);
    if (over === 6) b.socket6!.inject(vxlanFrame(other, kernelMac, parseMac('33:33:ff:00:00:09'), VNI, 0x86dd), a.underlayIp6);
    else b.socket.inject(vxlanFrame(other, kernelMac, parseMac('33:33:ff:00:00:09'), VNI, 0x86dd), a.underlayIp, PORT);
    await settle();
    assert.is(b.engine.counters.neighborAdvertisements, 1);
    assert.is(b.engine.counters.drops.get('ndp', 'not-for-us'), 1);
    const log = over === 6 ? net6.log : net.log;
    assert.is(log.length, 1);
    assert.is(log[0].to, over === 6 ? a.underlayIp6 : a.underlayIp, 'back to the asker');
    const na = log[0].data;
    assert.equal(parseEthernet(na, 8), { destination: kernelMac, source: b.mac6, etherType: 0x86dd });
    const ipr = parseIpv6(na, 22);
    assert.is(formatIPv6(ipr.source), 'fd00:10:244:2::');
    assert.is(formatIPv6(ipr.destination), 'fd00:10:244:1::');
    assert.is(ipr.hopLimit, 255);
    assert.equal(parseIcmpv6(na, 22, 62, ipr.payloadLength), {
      type: ICMPV6_NEIGHBOR_ADVERTISEMENT,
      code: 0,
      target: b.subnet6.address,
      flags: NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE,
      linkLayer: b.mac6,
      payloadLength: 24,
    });
  });
}

E6('without an IPv6 lease IPv6 is dropped as before: ipv6-not-supported', async () => {
  const { a } = dualPair(4, { noSubnet6: true });
  start(a);
  a.tun.inject(echoRequest6(ip6('fd00:10:244:1::5'), ip6('fd00:10:244:2::7')));
  await settle();
  assert.is(a.engine.counters.drops.get('tun-ipv4', 'ipv6-not-supported'), 1);
});

E6('an IPv6 route to a peer over an IPv6 underlay, when we have no IPv6 socket: counted', async () => {
  const { a, b } = dualPair(4);
  start(a);
  a.engine.tables.fdb6.set(b.mac6, b.underlayIp6);
  a.tun.inject(echoRequest6(ip6('fd00:10:244:1::5'), ip6('fd00:10:244:2::7')));
  await settle();
  assert.is(a.engine.counters.drops.get('underlay6', 'no-socket'), 1);
});

E6.run();
