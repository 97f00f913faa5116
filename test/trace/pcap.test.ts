import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseIPv4 } from '../../src/wire/address';
import { checkIpv4, parseIpv4, IPPROTO_UDP } from '../../src/wire/ipv4';
import { checkUdp, parseUdp, udpChecksumValid } from '../../src/wire/udp';
import {
  LINKTYPE_ETHERNET,
  LINKTYPE_RAW,
  OUTER_IPV4_UDP_LEN,
  PCAP_GLOBAL_HEADER_LEN,
  PCAP_MAGIC,
  PcapWriter,
  buildOuterIpv4Udp,
} from '../../src/trace/pcap';
import { ICMP_ECHO_REQUEST_PACKET, OFFSETS, VXLAN_ARP_FRAME } from '../wire/fixtures';

interface PcapRecord {
  seconds: number;
  micros: number;
  originalLength: number;
  data: Buffer;
}

/** An independent reader of the classic format, so the writer is not checked against itself. */
function readPcap(path: string): { magic: number; major: number; minor: number; snapLen: number; linkType: number; records: PcapRecord[] } {
  const file = readFileSync(path);
  const records: PcapRecord[] = [];
  let at = 24;
  while (at < file.length) {
    const included = file.readUInt32LE(at + 8);
    records.push({
      seconds: file.readUInt32LE(at),
      micros: file.readUInt32LE(at + 4),
      originalLength: file.readUInt32LE(at + 12),
      data: file.subarray(at + 16, at + 16 + included),
    });
    at += 16 + included;
  }
  assert.is(at, file.length, 'file ends on a record boundary');
  return {
    magic: file.readUInt32LE(0),
    major: file.readUInt16LE(4),
    minor: file.readUInt16LE(6),
    snapLen: file.readUInt32LE(16),
    linkType: file.readUInt32LE(20),
    records,
  };
}

let dir = '';
test.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'vxt-pcap-'));
});
test.after(() => {
  rmSync(dir, { recursive: true, force: true });
});

test('global header: magic a1b2c3d4, v2.4, LINKTYPE_RAW by default', () => {
  const path = join(dir, 'empty.pcap');
  PcapWriter.open(path).close();
  const f = readPcap(path);
  assert.equal([f.magic, f.major, f.minor, f.snapLen, f.linkType], [PCAP_MAGIC, 2, 4, 262144, LINKTYPE_RAW]);
  assert.is(statSync(path).size, PCAP_GLOBAL_HEADER_LEN);
  assert.is(readFileSync(path).subarray(0, 4).toString('hex'), 'd4c3b2a1', 'little-endian on disk');
});

test('records: bytes, lengths and explicit timestamps (number and bigint ns)', () => {
  const path = join(dir, 'records.pcap');
  const w = PcapWriter.open(path, LINKTYPE_ETHERNET);
  const padded = Buffer.concat([Buffer.alloc(5, 0xee), VXLAN_ARP_FRAME, Buffer.alloc(3, 0xee)]);
  w.write(padded, 5, VXLAN_ARP_FRAME.length, 1_700_000_000_123_456_000);
  w.write(ICMP_ECHO_REQUEST_PACKET, 0, 36, 1_700_000_001_000_001_999n);
  w.close();
  assert.is(w.packets, 2);
  const f = readPcap(path);
  assert.is(f.linkType, LINKTYPE_ETHERNET);
  assert.is(f.records.length, 2);
  assert.equal(f.records[0].data, VXLAN_ARP_FRAME);
  assert.is(f.records[0].originalLength, VXLAN_ARP_FRAME.length);
  assert.equal([f.records[0].seconds, f.records[0].micros], [1_700_000_000, 123_456]);
  assert.equal([f.records[1].seconds, f.records[1].micros], [1_700_000_001, 1]);
  assert.equal(f.records[1].data, ICMP_ECHO_REQUEST_PACKET);
});

test('default timestamp is the wall clock', () => {
  const path = join(dir, 'now.pcap');
  const before = Date.now();
  const w = PcapWriter.open(path);
  w.write(ICMP_ECHO_REQUEST_PACKET, 0, 36);
  w.close();
  const after = Date.now();
  const r = readPcap(path).records[0];
  const ms = r.seconds * 1000 + r.micros / 1000;
  assert.ok(ms >= before - 1 && ms <= after + 1, `${ms} within [${before}, ${after}]`);
});

test('snapLen cuts the bytes kept but records the original length', () => {
  const path = join(dir, 'snap.pcap');
  const w = PcapWriter.open(path, LINKTYPE_RAW, 28);
  w.write(ICMP_ECHO_REQUEST_PACKET, 0, 36, 0);
  w.close();
  const f = readPcap(path);
  assert.is(f.snapLen, 28);
  assert.is(f.records[0].data.length, 28);
  assert.is(f.records[0].originalLength, 36);
});

test('buffered: nothing reaches the file until a chunk fills or close; large packets pass through', () => {
  const path = join(dir, 'buffered.pcap');
  const w = PcapWriter.open(path, LINKTYPE_RAW, 1 << 20);
  for (let i = 0; i < 1000; i++) w.write(ICMP_ECHO_REQUEST_PACKET, 0, 36, i * 1000);
  assert.is(statSync(path).size, 0, '1000 small packets, no write yet');
  const big = Buffer.alloc(300 * 1024, 7); // larger than a chunk
  for (let i = 0; i < 10_000; i++) w.write(ICMP_ECHO_REQUEST_PACKET, 0, 36, i);
  w.write(big, 0, big.length, 5);
  w.write(ICMP_ECHO_REQUEST_PACKET, 0, 36, 6);
  assert.ok(statSync(path).size > 0, 'flushed once the chunk filled');
  w.close();
  w.close(); // idempotent
  const f = readPcap(path);
  assert.is(f.records.length, 11_002);
  assert.is(f.records[11_000].data.length, big.length);
  assert.ok(f.records[11_000].data.every((b) => b === 7));
  assert.equal(f.records[11_001].data, ICMP_ECHO_REQUEST_PACKET);
  assert.is(statSync(path).size, 24 + 11_001 * (16 + 36) + 16 + big.length);
  assert.throws(() => w.write(ICMP_ECHO_REQUEST_PACKET, 0, 36), /after close/);
});

test('buildOuterIpv4Udp writes a valid 28-byte outer header', () => {
  const buf = Buffer.alloc(28 + 50);
  VXLAN_ARP_FRAME.copy(buf, 28, OFFSETS.VXLAN);
  const outer = { source: parseIPv4('192.0.2.1'), destination: parseIPv4('192.0.2.2'), srcPort: 40000, dstPort: 4789 };
  assert.is(buildOuterIpv4Udp(outer, 50, buf, 0), OUTER_IPV4_UDP_LEN);
  assert.is(checkIpv4(buf, 0, buf.length), undefined);
  assert.equal(parseIpv4(buf), {
    source: outer.source,
    destination: outer.destination,
    protocol: IPPROTO_UDP,
    payloadLength: 58,
    ttl: 64,
    dscpEcn: 0,
    identification: 0,
    dontFragment: false,
    moreFragments: false,
    fragmentOffset: 0,
  });
  assert.equal(parseUdp(buf, 20, 58), { srcPort: 40000, dstPort: 4789, payloadLength: 50 });
  assert.is(buf.readUInt16BE(26), 0, 'no UDP checksum');
});

test('writeUdpDatagram synthesizes the outer headers with a correct UDP checksum', () => {
  const path = join(dir, 'udp.pcap');
  const w = PcapWriter.open(path);
  const outer = { source: parseIPv4('192.0.2.1'), destination: parseIPv4('192.0.2.2'), srcPort: 52461, dstPort: 4789 };
  w.writeUdpDatagram(outer, VXLAN_ARP_FRAME, OFFSETS.VXLAN, 50, 0);
  w.close();
  const data = readPcap(path).records[0].data;
  assert.is(data.length, 78);
  assert.is(checkIpv4(data, 0, 78), undefined);
  assert.is(checkUdp(data, 20, 58, outer.source, outer.destination), undefined);
  assert.ok(udpChecksumValid(data, 0));
  assert.is.not(data.readUInt16BE(26), 0);
  // The same datagram the kernel sent, but for the IP identification, DF... and a finished checksum.
  assert.equal(data.subarray(20, 26), VXLAN_ARP_FRAME.subarray(OFFSETS.OUTER_UDP, OFFSETS.OUTER_UDP + 6));
  assert.equal(data.subarray(28), VXLAN_ARP_FRAME.subarray(OFFSETS.VXLAN));
});

test.run();
