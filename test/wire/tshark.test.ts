// Cross-check against Wireshark: packets built with our emitters, written with PcapWriter, decoded by Debian's
// tshark. tshark's fields (with checksum validation turned on) must equal what our parsers read back.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LINKTYPE_ETHERNET, LINKTYPE_RAW, PcapWriter } from '../../src/trace/pcap';
import { formatIPv4, formatMac, parseIPv4, parseMac } from '../../src/wire/address';
import { parseArp } from '../../src/wire/arp';
import { ETHERNET_HEADER_LEN, ETHERTYPE_IPV4, emitEthernet, parseEthernet } from '../../src/wire/ethernet';
import { ICMP_ECHO_REQUEST, ICMP_FRAG_NEEDED, emitIcmp, emitIcmpUnreachable, parseIcmp } from '../../src/wire/icmp';
import { emitIpipOuter, ipipInnerOffset } from '../../src/wire/ipip';
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPV4_HEADER_LEN, emitIpv4, parseIpv4 } from '../../src/wire/ipv4';
import { TCP_ACK, TCP_SYN, emitTcp, parseTcp } from '../../src/wire/tcp';
import { UDP_HEADER_LEN, emitUdp, parseUdp } from '../../src/wire/udp';
import { VXLAN_HEADER_LEN, VXLAN_PORT_IANA, VXLAN_PORT_LINUX, emitVxlan, parseVxlan } from '../../src/wire/vxlan';
import { OFFSETS, VXLAN_8472_ICMP_FRAME, VXLAN_ARP_FRAME } from './fixtures';

const TSHARK = '/usr/bin/tshark';
const CHECKSUMS = ['-o', 'ip.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-o', 'tcp.check_checksum:TRUE'];
const GOOD = '1'; // *.checksum.status: 0 bad, 1 good, 2 unverified

/** One row per packet: field name -> its occurrences (outer first, inner next). */
function tshark(path: string, fields: string[], extra: string[] = []): Array<Record<string, string[]>> {
  const args = ['-n', '-r', path, ...CHECKSUMS, ...extra, '-T', 'fields', '-E', 'separator=/t', '-E', 'occurrence=a', '-E', 'aggregator=,'];
  for (const f of fields) args.push('-e', f);
  const out = execFileSync(TSHARK, args, { encoding: 'utf8', timeout: 30_000, stdio: ['ignore', 'pipe', 'pipe'] });
  return out
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => {
      const cols = line.split('\t');
      const row: Record<string, string[]> = {};
      fields.forEach((f, i) => (row[f] = cols[i] === undefined || cols[i] === '' ? [] : cols[i].split(',')));
      return row;
    });
}

const OUTER_SRC = parseIPv4('192.0.2.1');
const OUTER_DST = parseIPv4('192.0.2.2');
const INNER_SRC = parseIPv4('10.244.1.2');
const INNER_DST = parseIPv4('10.244.2.3');
const SRC_MAC = parseMac('66:0a:f4:01:00:01');
const DST_MAC = parseMac('66:0a:f4:02:00:01');

/** IPv4 / ICMP echo request with 8 data bytes at buf[off...]; returns its length (36). */
function innerPing(buf: Buffer, off: number): number {
  for (let i = 0; i < 8; i++) buf[off + 28 + i] = i;
  emitIcmp({ type: ICMP_ECHO_REQUEST, code: 0, identifier: 0x1234, sequence: 7, payloadLength: 8 }, buf, off + 20);
  emitIpv4({ source: INNER_SRC, destination: INNER_DST, protocol: IPPROTO_ICMP, payloadLength: 16, ttl: 63, dontFragment: true, identification: 0x4242 }, buf, off);
  return 36;
}

/** VXLAN(VNI) / Ethernet / IPv4 / ICMP echo at buf[off...]; returns its length. */
function vxlanPayload(buf: Buffer, off: number, vni: number): number {
  const inner = innerPing(buf, off + VXLAN_HEADER_LEN + ETHERNET_HEADER_LEN);
  emitEthernet({ destination: DST_MAC, source: SRC_MAC, etherType: ETHERTYPE_IPV4 }, buf, off + VXLAN_HEADER_LEN);
  emitVxlan({ vni }, buf, off);
  return VXLAN_HEADER_LEN + ETHERNET_HEADER_LEN + inner;
}

let dir = '';
test.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'vxt-tshark-'));
});
test.after(() => {
  rmSync(dir, { recursive: true, force: true });
});

const VXLAN_FIELDS = [
  'ip.src', 'ip.dst', 'ip.proto', 'ip.ttl', 'ip.flags.df', 'ip.checksum.status',
  'udp.srcport', 'udp.dstport', 'udp.length', 'udp.checksum.status',
  'vxlan.flags', 'vxlan.flag_i', 'vxlan.vni',
  'eth.src', 'eth.dst', 'eth.type',
  'icmp.type', 'icmp.code', 'icmp.ident', 'icmp.seq', 'icmp.checksum.status',
];

/** What our parsers read from a full outer-IPv4 VXLAN packet, in tshark's field format. */
function oursForVxlan(pkt: Buffer): Record<string, string[]> {
  const outer = parseIpv4(pkt);
  const udp = parseUdp(pkt, IPV4_HEADER_LEN, outer.payloadLength, outer.source, outer.destination);
  const vxOff = IPV4_HEADER_LEN + UDP_HEADER_LEN;
  const vx = parseVxlan(pkt, vxOff, udp.payloadLength);
  const eth = parseEthernet(pkt, vxOff + VXLAN_HEADER_LEN);
  const ipOff = vxOff + VXLAN_HEADER_LEN + ETHERNET_HEADER_LEN;
  const inner = parseIpv4(pkt, ipOff);
  const icmp = parseIcmp(pkt, ipOff + IPV4_HEADER_LEN, inner.payloadLength);
  return {
    'ip.src': [formatIPv4(outer.source), formatIPv4(inner.source)],
    'ip.dst': [formatIPv4(outer.destination), formatIPv4(inner.destination)],
    'ip.proto': [String(outer.protocol), String(inner.protocol)],
    'ip.ttl': [String(outer.ttl), String(inner.ttl)],
    'ip.flags.df': [outer.dontFragment ? '1' : '0', inner.dontFragment ? '1' : '0'],
    'ip.checksum.status': [GOOD, GOOD],
    'udp.srcport': [String(udp.srcPort)],
    'udp.dstport': [String(udp.dstPort)],
    'udp.length': [String(udp.payloadLength + UDP_HEADER_LEN)],
    'udp.checksum.status': [GOOD],
    'vxlan.flags': ['0x0800'], // flags byte 0x08 (I) and the first reserved byte
    'vxlan.flag_i': ['1'],
    'vxlan.vni': [String(vx.vni)],
    'eth.src': [formatMac(eth.source)],
    'eth.dst': [formatMac(eth.destination)],
    'eth.type': ['0x' + eth.etherType.toString(16).padStart(4, '0')],
    'icmp.type': [String(icmp.type)],
    'icmp.code': [String(icmp.code)],
    'icmp.ident': [String(icmp.identifier)],
    'icmp.seq': [String(icmp.sequence)],
    'icmp.checksum.status': [GOOD],
  };
}

test('VXLAN on 4789 and on 8472 (with -d udp.port==8472,vxlan): tshark decodes what we emitted', () => {
  // 4789: the whole packet built in one buffer by the emitters, outer UDP checksum filled.
  const a = Buffer.alloc(128);
  const payloadLen = vxlanPayload(a, IPV4_HEADER_LEN + UDP_HEADER_LEN, 1);
  emitUdp({ srcPort: 49152, dstPort: VXLAN_PORT_IANA, payloadLength: payloadLen, source: OUTER_SRC, destination: OUTER_DST }, a, IPV4_HEADER_LEN);
  emitIpv4({ source: OUTER_SRC, destination: OUTER_DST, protocol: IPPROTO_UDP, payloadLength: UDP_HEADER_LEN + payloadLen, ttl: 64 }, a, 0);
  const pktA = a.subarray(0, IPV4_HEADER_LEN + UDP_HEADER_LEN + payloadLen);

  // 8472: as the agent sees it, a bare UDP payload; the pcap writer synthesizes the outer headers.
  const b = Buffer.alloc(128);
  const lenB = vxlanPayload(b, 0, 1);

  const path = join(dir, 'vxlan.pcap');
  const w = PcapWriter.open(path, LINKTYPE_RAW);
  w.write(pktA, 0, pktA.length);
  w.writeUdpDatagram({ source: OUTER_SRC, destination: parseIPv4('192.0.2.3'), srcPort: 61000, dstPort: VXLAN_PORT_LINUX }, b, 0, lenB);
  w.close();

  const rows = tshark(path, VXLAN_FIELDS, ['-d', 'udp.port==8472,vxlan']);
  assert.is(rows.length, 2);
  assert.equal(rows[0], oursForVxlan(pktA));
  assert.equal(rows[0]['vxlan.vni'], ['1']);
  assert.equal(rows[0]['udp.dstport'], ['4789']);
  assert.equal(rows[0]['eth.src'], ['66:0a:f4:01:00:01']);

  const w2 = readBack(path, 1);
  assert.equal(rows[1], oursForVxlan(w2));
  assert.equal(rows[1]['udp.dstport'], ['8472']);
  assert.equal(rows[1]['ip.dst'], ['192.0.2.3', '10.244.2.3']);

  // Without the decode-as, tshark does not know 8472 is VXLAN: the option is what made it decode.
  const plain = tshark(path, ['frame.number', 'vxlan.vni']);
  assert.equal(plain[1], { 'frame.number': ['2'], 'vxlan.vni': [] });
});

/** The data of record i of a pcap file (minimal reader for the test). */
function readBack(path: string, index: number): Buffer {
  const file = readFileSync(path);
  let at = 24;
  for (let i = 0; ; i++) {
    const len = file.readUInt32LE(at + 8);
    if (i === index) return file.subarray(at + 16, at + 16 + len);
    at += 16 + len;
  }
}

test('IP-in-IP: IPv4 proto 4 / IPv4 / UDP', () => {
  const buf = Buffer.alloc(128);
  const inner = IPV4_HEADER_LEN;
  buf.write('vxtun', inner + 28);
  emitIpv4({ source: INNER_SRC, destination: INNER_DST, protocol: IPPROTO_UDP, payloadLength: 13, ttl: 63, identification: 9 }, buf, inner);
  emitUdp({ srcPort: 5353, dstPort: 53, payloadLength: 5, source: INNER_SRC, destination: INNER_DST }, buf, inner + 20);
  emitIpipOuter({ source: parseIPv4('198.51.100.1'), destination: parseIPv4('198.51.100.2') }, buf, 0);
  const pkt = buf.subarray(0, 20 + 33);
  const path = join(dir, 'ipip.pcap');
  const w = PcapWriter.open(path);
  w.write(pkt, 0, pkt.length);
  w.close();

  const fields = ['ip.src', 'ip.dst', 'ip.proto', 'ip.len', 'ip.id', 'ip.checksum.status', 'udp.srcport', 'udp.dstport', 'udp.checksum.status'];
  const [row] = tshark(path, fields);
  const outer = parseIpv4(pkt);
  const innerRepr = parseIpv4(pkt, ipipInnerOffset(pkt, 0));
  const udp = parseUdp(pkt, 40, innerRepr.payloadLength, innerRepr.source, innerRepr.destination);
  assert.equal(row, {
    'ip.src': [formatIPv4(outer.source), formatIPv4(innerRepr.source)],
    'ip.dst': [formatIPv4(outer.destination), formatIPv4(innerRepr.destination)],
    'ip.proto': [String(outer.protocol), String(innerRepr.protocol)],
    'ip.len': [String(outer.payloadLength + 20), String(innerRepr.payloadLength + 20)],
    'ip.id': ['0x' + (outer.identification ?? 0).toString(16).padStart(4, '0'), '0x' + (innerRepr.identification ?? 0).toString(16).padStart(4, '0')],
    'ip.checksum.status': [GOOD, GOOD],
    'udp.srcport': [String(udp.srcPort)],
    'udp.dstport': [String(udp.dstPort)],
    'udp.checksum.status': [GOOD],
  });
  assert.equal(row['ip.proto'], ['4', '17']);
});

test('TCP SYN and an ICMP frag-needed built by emitIcmpUnreachable', () => {
  const syn = Buffer.alloc(40);
  emitTcp({ srcPort: 40000, dstPort: 443, seq: 0xdeadbeef, ack: 0, flags: TCP_SYN, window: 64240, payloadLength: 0, source: INNER_SRC, destination: INNER_DST }, syn, 20);
  emitIpv4({ source: INNER_SRC, destination: INNER_DST, protocol: IPPROTO_TCP, payloadLength: 20, ttl: 64, dontFragment: true }, syn, 0);
  const big = Buffer.alloc(1500, 0x5a);
  emitIpv4({ source: INNER_SRC, destination: INNER_DST, protocol: IPPROTO_TCP, payloadLength: 1480, ttl: 64, dontFragment: true }, big, 0);
  emitTcp({ srcPort: 40000, dstPort: 443, seq: 1, ack: 1, flags: TCP_ACK, window: 502, payloadLength: 1460, source: INNER_SRC, destination: INNER_DST }, big, 20);
  const reply = Buffer.alloc(600);
  const replyLen = emitIcmpUnreachable(reply, 0, ICMP_FRAG_NEEDED, parseIPv4('10.244.1.1'), big, 0, big.length, 1450);

  const path = join(dir, 'tcp-icmp.pcap');
  const w = PcapWriter.open(path);
  w.write(syn, 0, 40);
  w.write(reply, 0, replyLen);
  w.close();

  const [tcpRow] = tshark(path, ['tcp.srcport', 'tcp.dstport', 'tcp.seq_raw', 'tcp.flags', 'tcp.hdr_len', 'tcp.window_size_value', 'tcp.checksum.status'], ['-c', '1']);
  const t = parseTcp(syn, 20, 20);
  assert.equal(tcpRow, {
    'tcp.srcport': [String(t.srcPort)],
    'tcp.dstport': [String(t.dstPort)],
    'tcp.seq_raw': [String(t.seq)],
    'tcp.flags': ['0x' + t.flags.toString(16).padStart(4, '0')],
    'tcp.hdr_len': ['20'],
    'tcp.window_size_value': [String(t.window)],
    'tcp.checksum.status': [GOOD],
  });

  const [, icmpRow] = tshark(path, ['frame.len', 'ip.src', 'ip.dst', 'ip.dsfield', 'icmp.type', 'icmp.code', 'icmp.mtu', 'icmp.checksum.status', 'ip.checksum.status']);
  const icmp = parseIcmp(reply, 20, replyLen - 20);
  assert.equal(icmpRow['frame.len'], ['576']);
  assert.equal(icmpRow['ip.src'], ['10.244.1.1', formatIPv4(INNER_SRC)]); // the quoted header follows
  assert.equal(icmpRow['ip.dst'][0], formatIPv4(INNER_SRC));
  assert.equal(icmpRow['ip.dsfield'][0], '0xc0');
  assert.equal(icmpRow['icmp.type'], [String(icmp.type)]);
  assert.equal(icmpRow['icmp.code'], [String(icmp.code)]);
  assert.equal(icmpRow['icmp.mtu'], [String(icmp.nextHopMtu)]);
  assert.equal(icmpRow['icmp.checksum.status'], [GOOD]);
  assert.equal(icmpRow['ip.checksum.status'], [GOOD, GOOD]);
});

test('our decoders agree with tshark on the kernel-captured frames (Ethernet link type, ARP inside VXLAN)', () => {
  const path = join(dir, 'kernel.pcap');
  const w = PcapWriter.open(path, LINKTYPE_ETHERNET);
  w.write(VXLAN_ARP_FRAME, 0, VXLAN_ARP_FRAME.length);
  w.write(VXLAN_8472_ICMP_FRAME, 0, VXLAN_8472_ICMP_FRAME.length);
  w.close();
  const rows = tshark(path, ['eth.src', 'eth.dst', 'vxlan.vni', 'udp.srcport', 'udp.checksum.status', 'arp.opcode', 'arp.src.hw_mac', 'arp.src.proto_ipv4', 'arp.dst.proto_ipv4'], ['-d', 'udp.port==8472,vxlan']);
  const arp = parseArp(VXLAN_ARP_FRAME, OFFSETS.INNER_PAYLOAD);
  const outerEth = parseEthernet(VXLAN_ARP_FRAME);
  const innerEth = parseEthernet(VXLAN_ARP_FRAME, OFFSETS.INNER_ETHERNET);
  assert.equal(rows[0], {
    'eth.src': [formatMac(outerEth.source), formatMac(innerEth.source)],
    'eth.dst': [formatMac(outerEth.destination), formatMac(innerEth.destination)],
    'vxlan.vni': [String(parseVxlan(VXLAN_ARP_FRAME, OFFSETS.VXLAN).vni)],
    'udp.srcport': [String(parseUdp(VXLAN_ARP_FRAME, OFFSETS.OUTER_UDP, 58).srcPort)],
    'udp.checksum.status': ['0'], // the unfinished CHECKSUM_PARTIAL value: tshark calls it bad too
    'arp.opcode': [String(arp.operation)],
    'arp.src.hw_mac': [formatMac(arp.senderMac)],
    'arp.src.proto_ipv4': [formatIPv4(arp.senderIp)],
    'arp.dst.proto_ipv4': [formatIPv4(arp.targetIp)],
  });
  assert.equal(rows[1]['vxlan.vni'], ['1']);
  assert.equal(rows[1]['eth.dst'][1], '02:00:00:02:02:02');
});

test.run();
