import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Counters } from '../../src/dataplane/counters';
import { createEncapsulation } from '../../src/dataplane/encap';
import { GSO_RETRY_MS } from '../../src/dataplane/gso-fallback';
import { SegmentSender } from '../../src/dataplane/segment-sender';
import { ForwardingTables } from '../../src/dataplane/tables';
import { FakeNetwork } from '../../src/io/fake';
import type { GsoSendResult } from '../../src/io/types';
import { parseCidr, parseMac } from '../../src/wire/address';
import { IPV4_HEADER_LEN, IPPROTO_TCP, checkIpv4, emitIpv4, parseIpv4 } from '../../src/wire/ipv4';
import { TCP_ACK, TCP_PSH, emitTcp, parseTcp, tcpChecksumValid } from '../../src/wire/tcp';
import { parseVxlan } from '../../src/wire/vxlan';
import { ip } from '../support/packets';

const MSS = 1398;
const remote = parseCidr('10.17.2.0/24');
const remoteMac = parseMac('02:00:00:00:00:02');
const local = { vtepIp: ip('10.17.1.0'), subnet: { address: ip('10.17.1.0'), prefixLength: 24 }, vtepMac: parseMac('02:00:00:00:00:01'), underlayIp: ip('192.0.2.11'), vni: 1, port: 4789 };

/** A TSO super-packet as the kernel hands it over: one IPv4/TCP header, `payload` bytes, checksum not final. */
function superPacket(payload: number): Buffer {
  const packet = Buffer.alloc(IPV4_HEADER_LEN + 20 + payload);
  for (let i = 0; i < payload; i++) packet[40 + i] = (i * 7) & 0xff;
  emitTcp({ srcPort: 5001, dstPort: 44000, seq: 0xfffff000, ack: 1, flags: TCP_ACK | TCP_PSH, window: 500, payloadLength: payload }, packet, IPV4_HEADER_LEN);
  emitIpv4({ source: ip('10.17.1.0'), destination: ip('10.17.2.1'), protocol: IPPROTO_TCP, payloadLength: 20 + payload, ttl: 64, dontFragment: true, identification: 100 }, packet, 0);
  return packet;
}

function setup(gso?: (buf: Buffer, off: number, len: number, size: number) => GsoSendResult) {
  const net = new FakeNetwork();
  const socket = net.udp(local.underlayIp, 4789);
  if (gso) Object.assign(socket, { sendGso: (buf: Buffer, off: number, len: number, size: number) => gso(buf, off, len, size) });
  const receiver = net.udp(ip('192.0.2.12'), 4789);
  const tables = new ForwardingTables();
  tables.neighbors.set(remote.address, remoteMac);
  tables.fdb.set(remoteMac, ip('192.0.2.12'));
  const route = { subnet: remote, gateway: remote.address, encap: 'vxlan' as const };
  const counters = new Counters(64);
  const sender = new SegmentSender(createEncapsulation('vxlan', local), counters, gso !== undefined);
  return { net, socket, receiver, tables, route, counters, sender };
}

/** Checks datagrams carry VXLAN + valid IPv4/TCP segments whose payloads rebuild the super-packet's. */
function assertSegments(datagrams: Buffer[], original: Buffer): void {
  const payloads: Buffer[] = [];
  let seq = 0xfffff000;
  datagrams.forEach((d, i) => {
    assert.equal(parseVxlan(d), { vni: 1 });
    const ipOff = 22;
    assert.is(checkIpv4(d, ipOff, d.length - ipOff), undefined, `segment ${i} IPv4`);
    assert.ok(tcpChecksumValid(d, ipOff), `segment ${i} TCP checksum`);
    const ipRepr = parseIpv4(d, ipOff);
    assert.is(ipRepr.identification, (100 + i) & 0xffff);
    const tcp = parseTcp(d, ipOff + 20, ipRepr.payloadLength);
    assert.is(tcp.seq, seq >>> 0, `segment ${i} seq`);
    assert.is((tcp.flags & TCP_PSH) !== 0, i === datagrams.length - 1, 'PSH only on the last');
    const payload = d.subarray(ipOff + 40);
    seq = (seq + payload.length) >>> 0;
    payloads.push(payload);
  });
  assert.ok(Buffer.concat(payloads).equals(original.subarray(40)), 'payload bytes intact, in order');
}

const Segments = suite('segment sender');

Segments('without GSO: one sendmmsg batch of MSS-sized VXLAN datagrams', () => {
  const { net, socket, route, tables, counters, sender } = setup();
  const packet = superPacket(10 * MSS + 100);
  const sent = sender.send(socket, packet, 0, packet.length, 40, MSS, 20, route, tables);
  assert.is(sent, 11);
  assert.is(net.log.length, 11);
  assert.ok(net.log.every((d) => d.to === ip('192.0.2.12') && d.port === 4789));
  assertSegments(net.log.map((d) => d.data), packet);
  assert.is(counters.underlayOut.packets, 11);
});

Segments('with GSO: runs of at most 64 segments and 65507 bytes per call, equal sizes but the last', () => {
  const calls: { len: number; size: number }[] = [];
  const { socket, route, tables, sender } = setup((_buf, _off, len, size) => {
    calls.push({ len, size });
    return 'sent';
  });
  const packet = superPacket(65535 - 40);
  const sent = sender.send(socket, packet, 0, packet.length, 40, MSS, 20, route, tables);
  const segmentSize = 22 + 40 + MSS;
  assert.is(sent, Math.ceil((65535 - 40) / MSS));
  assert.ok(calls.length >= 2, 'a 64 KB super-packet with headers exceeds one GSO datagram');
  for (const call of calls) {
    assert.is(call.size, segmentSize);
    assert.ok(call.len <= 65507 && call.len / segmentSize <= 64);
  }
  assert.is(calls.reduce((sum, c) => sum + c.len, 0), 65535 - 40 + sent * (22 + 40));
});

Segments('a refused GSO falls back to batches (until its retry); a packet that cannot be segmented is counted', () => {
  let refusals = 0;
  const { net, socket, route, tables, counters, sender } = setup(() => {
    refusals++;
    return 'fallback';
  });
  const packet = superPacket(3 * MSS);
  assert.is(sender.send(socket, packet, 0, packet.length, 40, MSS, 20, route, tables), 3);
  assert.is(sender.send(socket, packet, 0, packet.length, 40, MSS, 20, route, tables), 3);
  assert.is(refusals, 1, 'GSO is not tried again');
  assert.is(net.log.length, 3, 'the second packet went as a batch');
  const udp = Buffer.from(packet);
  udp[9] = 17; // not TCP
  assert.is(sender.send(socket, udp, 0, udp.length, 40, MSS, 20, route, tables), 0);
  assert.is(counters.drops.get('gso', 'cannot-segment'), 1);
});

Segments('a GSO refusal falls back for that destination only: counted, logged once, retried after 30 s then 60 s', () => {
  const net = new FakeNetwork();
  const socket = net.udp(local.underlayIp, 4789).enableGso();
  const refusing = ip('192.0.2.12');
  const working = ip('192.0.2.13');
  net.udp(refusing, 4789);
  net.udp(working, 4789);
  socket.refuseGsoTo.add(refusing);
  const tables = new ForwardingTables();
  const peers = [
    { subnet: parseCidr('10.17.2.0/24'), mac: parseMac('02:00:00:00:00:02'), underlay: refusing },
    { subnet: parseCidr('10.17.3.0/24'), mac: parseMac('02:00:00:00:00:03'), underlay: working },
  ];
  for (const p of peers) {
    tables.neighbors.set(p.subnet.address, p.mac);
    tables.fdb.set(p.mac, p.underlay);
  }
  const [toRefusing, toWorking] = peers.map((p) => ({ subnet: p.subnet, gateway: p.subnet.address, encap: 'vxlan' as const }));
  let clock = 1_000;
  const lines: string[] = [];
  const log = { info: (msg: string) => lines.push(`info ${msg}`), warn: (msg: string) => lines.push(`warn ${msg}`), error: (msg: string) => lines.push(`error ${msg}`) };
  const counters = new Counters(64);
  const sender = new SegmentSender(createEncapsulation('vxlan', local), counters, true, { now: () => clock, log });
  const packet = superPacket(3 * MSS);
  const send = (route: typeof toRefusing) => sender.send(socket, packet, 0, packet.length, 40, MSS, 20, route, tables);
  const delivered = (to: number) => net.log.filter((d) => d.to === to);

  assert.is(send(toRefusing), 3, 'the refused run still leaves, one by one');
  assert.is(send(toWorking), 3);
  assert.is(counters.gsoFallbacks, 1);
  assert.is(counters.gsoFallbackPeers, 1);
  assert.ok(delivered(working).every((d) => d.gso === true), 'the other peer keeps GSO');
  assert.is(lines.filter((l) => l.startsWith('warn')).length, 1);

  const calls = socket.gsoCalls;
  clock += GSO_RETRY_MS - 1;
  assert.is(send(toRefusing), 3);
  assert.is(send(toWorking), 3);
  assert.is(socket.gsoCalls, calls + 1, 'no GSO toward the refusing peer before its 30 s are over; the other peer still uses it');
  assert.is(delivered(refusing).length, 6);
  assertSegments(delivered(refusing).slice(3).map((d) => d.data), packet);

  clock += 1;
  assert.is(send(toRefusing), 3);
  assert.is(socket.gsoCalls, calls + 2, 'retried after 30 s');
  assert.is(counters.gsoFallbacks, 2, 'refused again: counted');
  assert.is(lines.filter((l) => l.startsWith('warn')).length, 1, 'but logged once');
  clock += 2 * GSO_RETRY_MS - 1;
  send(toRefusing);
  assert.is(socket.gsoCalls, calls + 2, 'the wait doubled to 60 s');

  socket.refuseGsoTo.delete(refusing); // the route changed
  clock += 1;
  assert.is(send(toRefusing), 3);
  assert.is(socket.gsoCalls, calls + 3);
  assert.is(counters.gsoFallbackPeers, 0, 'GSO is back for that peer');
  assert.ok(delivered(refusing).slice(-3).every((d) => d.gso === true));
  assert.equal(lines.filter((l) => l.startsWith('info')).length, 1);
  assert.is(sender.fallback.snapshot().length, 0);
});

Segments('a refusal in the middle of a 64 KB super-packet: the rest of it leaves in one batch, every segment in order', () => {
  const net = new FakeNetwork();
  const socket = net.udp(local.underlayIp, 4789).enableGso();
  socket.refuseGsoTo.add(ip('192.0.2.12'));
  const { route, tables, counters } = setup();
  const sender = new SegmentSender(createEncapsulation('vxlan', local), counters, true, { now: () => 0 });
  const packet = superPacket(65535 - 40);
  const segments = Math.ceil((65535 - 40) / MSS);
  assert.is(sender.send(socket, packet, 0, packet.length, 40, MSS, 20, route, tables), segments);
  assert.is(socket.gsoCalls, 1, 'one refused GSO call, then a batch');
  assert.is(net.log.length, segments);
  assertSegments(net.log.map((d) => d.data), packet);
  assert.is(counters.underlayOut.packets, segments);
});

Segments.run();
