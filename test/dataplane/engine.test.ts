import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createEncapsulation } from '../../src/dataplane/encap';
import { Engine } from '../../src/dataplane/engine';
import { FakeNetwork } from '../../src/io/fake';
import { type Mac, parseMac } from '../../src/wire/address';
import { ARP_REPLY, ARP_REQUEST, emitArp, parseArp } from '../../src/wire/arp';
import { ETHERTYPE_ARP, emitEthernet, parseEthernet } from '../../src/wire/ethernet';
import { ICMP_DEST_UNREACHABLE, ICMP_FRAG_NEEDED, ICMP_NET_UNREACHABLE, parseIcmp } from '../../src/wire/icmp';
import { IPV4_HEADER_LEN, parseIpv4 } from '../../src/wire/ipv4';
import { emitIpipOuter } from '../../src/wire/ipip';
import { emitVxlan, parseVxlan } from '../../src/wire/vxlan';
import { type FakeNode, NETWORK, PORT, VNI, fakePair, learnPeer, makeFakeNode } from '../support/fake-nodes';
import { echoRequest, ip, udpPacket } from '../support/packets';

/**
 * Lets the engines' readiness callbacks run until the fakes are quiet. The fakes wake engines with setImmediate, so
 * this counts event-loop turns, not milliseconds: a loaded machine slows it down but cannot cut it short.
 */
async function settle(..._nodes: FakeNode[]): Promise<void> {
  for (let turn = 0; turn < 200; turn++) await new Promise((resolve) => setImmediate(resolve));
}

const Engine_ = suite('engine');

for (const encap of ['vxlan', 'ipip'] as const) {
  Engine_(`${encap}: a packet crosses from one TUN to the other, both ways, unchanged`, async () => {
    const { a, b } = fakePair(encap);
    a.engine.start();
    b.engine.start();
    const ping = echoRequest(ip('10.17.1.0'), ip('10.17.2.0'));
    const pong = echoRequest(ip('10.17.2.0'), ip('10.17.1.0'), 100);
    a.tun.inject(ping);
    b.tun.inject(pong);
    await settle(a, b);
    assert.equal(b.tun.written, [ping]);
    assert.equal(a.tun.written, [pong]);
    assert.is(a.engine.counters.underlayOut.packets, 1);
    assert.is(b.engine.counters.tunOut.packets, 1);
    assert.is(a.engine.counters.drops.total + b.engine.counters.drops.total, 0);
  });
}

Engine_('vxlan: the wire carries RFC 7348 framing: I flag, VNI, inner Ethernet to the peer VTEP MAC', async () => {
  const { net, a, b } = fakePair('vxlan');
  a.engine.start();
  a.tun.inject(echoRequest(ip('10.17.1.0'), ip('10.17.2.0')));
  await settle(a, b);
  assert.is(net.log.length, 1);
  const sent = net.log[0];
  assert.is(sent.to, b.underlayIp);
  assert.is(sent.port, PORT);
  assert.equal(parseVxlan(sent.data), { vni: VNI });
  assert.is(sent.data[0], 0x08);
  const eth = parseEthernet(sent.data, 8);
  assert.is(eth.destination, b.mac);
  assert.is(eth.source, a.mac);
  assert.is(eth.etherType, 0x0800);
});

Engine_('no route: ICMP net unreachable goes back into the TUN and the drop is counted', async () => {
  const { a } = fakePair('vxlan');
  a.engine.start();
  const lost = echoRequest(ip('10.17.1.0'), ip('10.17.99.1'));
  a.tun.inject(lost);
  await settle(a);
  assert.is(a.engine.counters.drops.get('route', 'no-match'), 1);
  assert.is(a.tun.written.length, 1);
  const reply = a.tun.written[0];
  const outer = parseIpv4(reply);
  assert.is(outer.destination, ip('10.17.1.0'));
  assert.is(outer.source, NETWORK.address, 'from the network address, never a local one');
  const icmp = parseIcmp(reply, IPV4_HEADER_LEN);
  assert.is(icmp.type, ICMP_DEST_UNREACHABLE);
  assert.is(icmp.code, ICMP_NET_UNREACHABLE);
  assert.equal(reply.subarray(IPV4_HEADER_LEN + 8, IPV4_HEADER_LEN + 8 + 28), lost.subarray(0, 28), 'quotes the original header + 8 bytes');
});

Engine_('DF packet over the overlay MTU: ICMP fragmentation needed carrying the MTU', async () => {
  const { a, b } = fakePair('vxlan');
  a.engine.start();
  b.engine.start();
  a.tun.inject(echoRequest(ip('10.17.1.0'), ip('10.17.2.5'), 1500, { dontFragment: true }));
  a.tun.inject(echoRequest(ip('10.17.1.0'), ip('10.17.2.5'), 1500, { dontFragment: false }));
  await settle(a, b);
  assert.is(a.engine.counters.drops.get('mtu', 'too-big'), 1);
  const icmp = parseIcmp(a.tun.written[0], IPV4_HEADER_LEN);
  assert.is(icmp.code, ICMP_FRAG_NEEDED);
  assert.is(icmp.nextHopMtu, 1450);
  assert.is(b.tun.written.length, 1, 'without DF the packet goes on; the underlay fragments the outer datagram');
});

Engine_('vxlan inbound: wrong VNI, clear I flag, unknown VTEP, foreign MAC, garbage: dropped by reason, nothing crashes', async () => {
  const { a, b } = fakePair('vxlan');
  b.engine.start();
  const inner = echoRequest(ip('10.17.1.0'), ip('10.17.2.0'));
  const frame = (vni: number, dstMac: Mac): Buffer => {
    const f = Buffer.alloc(8 + 14 + inner.length);
    emitVxlan({ vni }, f, 0);
    emitEthernet({ destination: dstMac, source: a.mac, etherType: 0x0800 }, f, 8);
    inner.copy(f, 22);
    return f;
  };
  b.socket.inject(frame(2, b.mac), a.underlayIp, PORT);
  const noFlag = frame(VNI, b.mac);
  noFlag[0] = 0;
  b.socket.inject(noFlag, a.underlayIp, PORT);
  b.socket.inject(frame(VNI, b.mac), ip('198.51.100.7'), PORT);
  b.socket.inject(frame(VNI, parseMac('02:aa:aa:aa:aa:aa')), a.underlayIp, PORT);
  b.socket.inject(Buffer.from([1, 2, 3]), a.underlayIp, PORT);
  const badInner = frame(VNI, b.mac);
  badInner[22 + 10] ^= 0xff; // corrupt the inner header checksum
  b.socket.inject(badInner, a.underlayIp, PORT);
  b.socket.inject(frame(VNI, b.mac), a.underlayIp, PORT); // the one good frame
  await settle(a, b);
  const drops = b.engine.counters.drops;
  assert.is(drops.get('vxlan', 'wrong-vni'), 1);
  assert.is(drops.get('vxlan', 'no-vni-flag'), 1);
  assert.is(drops.get('underlay', 'unknown-vtep'), 1);
  assert.is(drops.get('ethernet', 'not-our-mac'), 1);
  assert.is(drops.get('vxlan', 'truncated'), 1);
  assert.is(drops.get('inner-ipv4', 'bad-checksum'), 1);
  assert.equal(b.tun.written, [inner]);
});

Engine_('vxlan inbound: an ARP request for our VTEP address is answered to the asker', async () => {
  const { net, a, b } = fakePair('vxlan');
  b.engine.start();
  const f = Buffer.alloc(8 + 14 + 28);
  emitVxlan({ vni: VNI }, f, 0);
  emitEthernet({ destination: 0xffffffffffff, source: a.mac, etherType: ETHERTYPE_ARP }, f, 8);
  emitArp({ operation: ARP_REQUEST, senderMac: a.mac, senderIp: ip('10.17.1.0'), targetMac: 0, targetIp: ip('10.17.2.0') }, f, 22);
  b.socket.inject(f, a.underlayIp, PORT);
  await settle(a, b);
  assert.is(b.engine.counters.arpReplies, 1);
  const reply = net.log.find((d) => d.from === b.underlayIp)!;
  assert.ok(reply, 'a reply was sent');
  assert.is(reply.to, a.underlayIp);
  const arp = parseArp(reply.data, 22);
  assert.is(arp.operation, ARP_REPLY);
  assert.is(arp.senderMac, b.mac);
  assert.is(arp.senderIp, ip('10.17.2.0'));
  assert.is(arp.targetMac, a.mac);
  assert.is(parseEthernet(reply.data, 8).destination, a.mac);
});

Engine_('ipip inbound: not protocol 4, unknown sender, corrupt outer header: dropped by reason', async () => {
  const { a, b } = fakePair('ipip');
  b.engine.start();
  // A datagram from an address b does not know, as the kernel would hand it to the raw socket.
  const inner = echoRequest(ip('10.17.1.0'), ip('10.17.2.0'));
  const outer = Buffer.alloc(20 + inner.length);
  inner.copy(outer, 20);
  emitIpipOuter({ source: ip('198.51.100.9'), destination: b.underlayIp }, outer, 0);
  b.socket.inject(outer, ip('198.51.100.9'));
  const corrupt = Buffer.from(outer);
  corrupt.writeUInt32BE(a.underlayIp, 12); // checksum now wrong
  b.socket.inject(corrupt, a.underlayIp);
  await settle(a, b);
  assert.is(b.engine.counters.drops.get('underlay', 'unknown-vtep'), 1);
  assert.is(b.engine.counters.drops.get('ipip', 'outer-bad-checksum'), 1);
  assert.is(b.tun.written.length, 0);
});

Engine_('a sustained run reuses pool slots: no slot leaks, the slab is never replaced', async () => {
  const { a, b } = fakePair('vxlan');
  a.engine.start();
  b.engine.start();
  const slabA = a.pool.slab;
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 200; i++) a.tun.inject(echoRequest(ip('10.17.1.0'), ip('10.17.2.0'), 64, { sequence: i }));
    await settle(a, b);
  }
  assert.is(b.tun.written.length, 4000);
  assert.is(a.pool.available, a.pool.capacity, 'every slot came back');
  assert.is(b.pool.available, b.pool.capacity);
  assert.ok(a.pool.slab === slabA);
  assert.ok(a.engine.counters.outboundBatches.mean > 1, 'packets moved in batches');
});

Engine_('pool exhaustion is backpressure: nothing is read until slots return, nothing is lost from the TUN', async () => {
  const net = new FakeNetwork();
  const a = makeFakeNode(net, 'vxlan', 1, { poolSize: 4 });
  const b = makeFakeNode(net, 'vxlan', 2);
  learnPeer(a, b, 'vxlan');
  learnPeer(b, a, 'vxlan');
  a.engine.start();
  b.engine.start();
  for (let i = 0; i < 50; i++) a.tun.inject(echoRequest(ip('10.17.1.0'), ip('10.17.2.0'), 32, { sequence: i }));
  await settle(a, b);
  assert.is(b.tun.written.length, 50);
  assert.ok(a.engine.counters.outboundBatches.mean <= 4);
});

Engine_('source-port entropy: each inner flow keeps one outer source port, and flows spread over the senders', async () => {
  const net = new FakeNetwork();
  const a = makeFakeNode(net, 'vxlan', 1);
  const b = makeFakeNode(net, 'vxlan', 2);
  learnPeer(a, b, 'vxlan');
  learnPeer(b, a, 'vxlan');
  const senders = [a.socket, net.udp(a.underlayIp, 40001), net.udp(a.underlayIp, 40002), net.udp(a.underlayIp, 40003)];
  const local = { vtepIp: a.subnet.address, subnet: a.subnet, vtepMac: a.mac, underlayIp: a.underlayIp, vni: VNI, port: PORT };
  const engine = new Engine({ tun: a.tun, socket: a.socket, senders, encap: createEncapsulation('vxlan', local), pool: a.pool, local, overlayMtu: 1450, network: NETWORK, tables: a.engine.tables });
  engine.start();
  b.engine.start();
  for (let round = 0; round < 3; round++) {
    for (let flow = 0; flow < 32; flow++) a.tun.inject(udpPacket(ip('10.17.1.0'), ip('10.17.2.9'), 10000 + flow, 53));
  }
  await settle(a, b);
  assert.is(b.tun.written.length, 96, 'every datagram arrived, whatever its source port');
  const portOfFlow = new Map<number, Set<number>>();
  for (const d of net.log.filter((entry) => entry.to === b.underlayIp)) {
    const innerSrcPort = d.data.readUInt16BE(22 + 20);
    if (!portOfFlow.has(innerSrcPort)) portOfFlow.set(innerSrcPort, new Set());
    portOfFlow.get(innerSrcPort)!.add(d.fromPort);
  }
  assert.is(portOfFlow.size, 32);
  assert.ok([...portOfFlow.values()].every((ports) => ports.size === 1), 'a flow never changes source port');
  const used = new Set([...portOfFlow.values()].map((ports) => [...ports][0]));
  assert.ok(used.size >= 3, `32 flows used ${used.size} of 4 source ports`);
});

Engine_.run();
