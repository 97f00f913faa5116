// Cross-check against Wireshark for IPv6 (issue 12): IPv6 / ICMPv6 packets built with our emitters, and VXLAN over an
// IPv6 underlay written by PcapWriter.writeUdpDatagram6, decoded by tshark with checksum validation on. tshark's
// fields must equal what our parsers read back, field for field.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LINKTYPE_RAW, PcapWriter } from '../../src/trace/pcap';
import { formatMac, parseMac } from '../../src/wire/address';
import { formatIPv6, parseIPv6 } from '../../src/wire/address6';
import { ETHERNET_HEADER_LEN, ETHERTYPE_IPV6, emitEthernet, parseEthernet } from '../../src/wire/ethernet';
import {
  ICMPV6_DEST_UNREACHABLE,
  ICMPV6_ECHO_REQUEST,
  ICMPV6_NO_ROUTE,
  ICMPV6_PACKET_TOO_BIG,
  answerNeighborSolicitation,
  emitIcmpv6,
  emitIcmpv6Error,
  parseIcmpv6,
} from '../../src/wire/icmpv6';
import { IPPROTO_ICMPV6, IPV6_HEADER_LEN, emitIpv6, parseIpv6 } from '../../src/wire/ipv6';
import { VXLAN_HEADER_LEN, VXLAN_PORT_IANA, emitVxlan, parseVxlan } from '../../src/wire/vxlan';
import { NS_FRAME, ip6Of } from './fixtures6';

const TSHARK = '/usr/bin/tshark';
// Wireshark always verifies the ICMPv6 checksum (it has no preference for it); UDP's must be turned on.
const CHECKSUMS = ['-o', 'udp.check_checksum:TRUE'];
const GOOD = '1';

function tshark(path: string, fields: string[]): Array<Record<string, string[]>> {
  const args = ['-n', '-r', path, ...CHECKSUMS, '-T', 'fields', '-E', 'separator=/t', '-E', 'occurrence=a', '-E', 'aggregator=,'];
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

const INNER_SRC = parseIPv6('fd00:10:244:1::2');
const INNER_DST = parseIPv6('fd00:10:244:2::3');

function ping6(): Buffer {
  const p = Buffer.alloc(IPV6_HEADER_LEN + 16);
  for (let i = 0; i < 8; i++) p[48 + i] = i;
  emitIpv6({ source: INNER_SRC, destination: INNER_DST, nextHeader: IPPROTO_ICMPV6, payloadLength: 16, hopLimit: 63, flowLabel: 0x12345 }, p, 0);
  emitIcmpv6({ type: ICMPV6_ECHO_REQUEST, code: 0, identifier: 0x1234, sequence: 7, payloadLength: 8 }, p, 0, IPV6_HEADER_LEN);
  return p;
}

const IP6_FIELDS = ['ipv6.src', 'ipv6.dst', 'ipv6.plen', 'ipv6.nxt', 'ipv6.hlim', 'icmpv6.type', 'icmpv6.code', 'icmpv6.checksum.status', 'icmpv6.mtu'];

function oursForIp6(p: Buffer, off = 0): Record<string, string[]> {
  const ipr = parseIpv6(p, off);
  const icmp = parseIcmpv6(p, off, off + 40, ipr.payloadLength);
  return {
    'ipv6.src': [formatIPv6(ipr.source)],
    'ipv6.dst': [formatIPv6(ipr.destination)],
    'ipv6.plen': [String(ipr.payloadLength)],
    'ipv6.nxt': [String(ipr.nextHeader)],
    'ipv6.hlim': [String(ipr.hopLimit)],
    'icmpv6.type': [String(icmp.type)],
    'icmpv6.code': [String(icmp.code)],
    'icmpv6.checksum.status': [GOOD],
    'icmpv6.mtu': icmp.mtu === undefined ? [] : [String(icmp.mtu)],
  };
}

/** Only the first occurrence of each field: errors quote the original, whose fields tshark lists second. */
function first(row: Record<string, string[]>): Record<string, string[]> {
  return Object.fromEntries(Object.entries(row).map(([k, v]) => [k, v.slice(0, 1)]));
}

let dir = '';
test.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'vxt-tshark6-'));
});
test.after(() => {
  rmSync(dir, { recursive: true, force: true });
});

test('IPv6 echo, Packet Too Big, Destination Unreachable and our NA: tshark reads what our parsers read', () => {
  const path = join(dir, 'ip6.pcap');
  const pcap = PcapWriter.open(path, LINKTYPE_RAW);
  const ping = ping6();
  const big = Buffer.alloc(1500);
  emitIpv6({ source: INNER_SRC, destination: INNER_DST, nextHeader: 17, payloadLength: 1460, hopLimit: 64 }, big, 0);
  const from = Buffer.alloc(16);
  from.writeUInt32BE(0xfd000010, 0);
  from.writeUInt32BE(0x02440002, 4);
  const ptb = Buffer.alloc(1280);
  const ptbLen = emitIcmpv6Error(ptb, 0, ICMPV6_PACKET_TOO_BIG, 0, 1430, from, 0, big, 0, big.length);
  const du = Buffer.alloc(200);
  const duLen = emitIcmpv6Error(du, 0, ICMPV6_DEST_UNREACHABLE, ICMPV6_NO_ROUTE, 0, from, 0, ping, 0, ping.length);
  const na = Buffer.from(ip6Of(NS_FRAME));
  const naLen = answerNeighborSolicitation(na, 0, parseMac('66:0a:f4:02:00:06'), true);
  const packets = [ping, ptb.subarray(0, ptbLen), du.subarray(0, duLen), na.subarray(0, naLen)];
  for (const p of packets) pcap.write(p, 0, p.length);
  pcap.close();
  const rows = tshark(path, IP6_FIELDS);
  assert.is(rows.length, 4);
  for (let i = 0; i < packets.length; i++) assert.equal(first(rows[i]), first(oursForIp6(packets[i])), `packet ${i}`);
  assert.equal(rows[1]['icmpv6.mtu'], ['1430']);
  assert.is(ptbLen, 1280);
  const nd = tshark(path, ['icmpv6.nd.na.target_address', 'icmpv6.nd.na.flag.s', 'icmpv6.nd.na.flag.o', 'icmpv6.nd.na.flag.r', 'icmpv6.opt.linkaddr']);
  assert.equal(nd[3], {
    'icmpv6.nd.na.target_address': ['2001:db8::b'],
    'icmpv6.nd.na.flag.s': ['1'],
    'icmpv6.nd.na.flag.o': ['1'],
    'icmpv6.nd.na.flag.r': ['0'],
    'icmpv6.opt.linkaddr': ['66:0a:f4:02:00:06'],
  });
});

test('VXLAN over an IPv6 underlay (writeUdpDatagram6): outer IPv6/UDP, VXLAN, inner Ethernet 0x86dd, inner IPv6', () => {
  const path = join(dir, 'vxlan6.pcap');
  const pcap = PcapWriter.open(path, LINKTYPE_RAW);
  const inner = ping6();
  const frame = Buffer.alloc(VXLAN_HEADER_LEN + ETHERNET_HEADER_LEN + inner.length);
  emitVxlan({ vni: 4096 }, frame, 0);
  emitEthernet({ destination: parseMac('66:0a:f4:02:00:06'), source: parseMac('66:0a:f4:01:00:06'), etherType: ETHERTYPE_IPV6 }, frame, VXLAN_HEADER_LEN);
  inner.copy(frame, VXLAN_HEADER_LEN + ETHERNET_HEADER_LEN);
  const outer = { source: parseIPv6('2001:db8::11'), destination: parseIPv6('2001:db8::12'), srcPort: 49152, dstPort: VXLAN_PORT_IANA };
  pcap.writeUdpDatagram6(outer, frame, 0, frame.length);
  pcap.close();
  const rows = tshark(path, ['ipv6.src', 'ipv6.dst', 'ipv6.nxt', 'udp.srcport', 'udp.dstport', 'udp.length', 'udp.checksum.status', 'vxlan.flag_i', 'vxlan.vni', 'eth.src', 'eth.dst', 'eth.type', 'icmpv6.type', 'icmpv6.echo.identifier', 'icmpv6.echo.sequence_number', 'icmpv6.checksum.status', 'ipv6.flow']);
  assert.is(rows.length, 1);
  const eth = parseEthernet(frame, VXLAN_HEADER_LEN);
  const ipr = parseIpv6(inner);
  const icmp = parseIcmpv6(inner, 0, 40, ipr.payloadLength);
  assert.equal(rows[0], {
    'ipv6.src': [formatIPv6(outer.source), formatIPv6(ipr.source)],
    'ipv6.dst': [formatIPv6(outer.destination), formatIPv6(ipr.destination)],
    'ipv6.nxt': ['17', String(ipr.nextHeader)],
    'udp.srcport': ['49152'],
    'udp.dstport': [String(VXLAN_PORT_IANA)],
    'udp.length': [String(8 + frame.length)],
    'udp.checksum.status': [GOOD],
    'vxlan.flag_i': ['1'],
    'vxlan.vni': [String(parseVxlan(frame).vni)],
    'eth.src': [formatMac(eth.source)],
    'eth.dst': [formatMac(eth.destination)],
    'eth.type': ['0x86dd'],
    'icmpv6.type': [String(icmp.type)],
    'icmpv6.echo.identifier': ['0x1234'],
    'icmpv6.echo.sequence_number': [String(icmp.sequence)],
    'icmpv6.checksum.status': [GOOD],
    'ipv6.flow': ['0x000000', '0x012345'],
  });
});

test.run();
