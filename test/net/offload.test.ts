// The native offload primitives: TCP segmentation of TUN super-packets, partial checksums, TUN write coalescing, and
// UDP GSO/GRO. Pure byte work is checked in this process against crafted packets; kernel behaviour (TSO reads, GSO
// writes, UDP_SEGMENT / UDP_GRO) in throwaway namespaces through test/net/offload.child.ts.
import { execFile, execFileSync } from 'child_process';
import * as path from 'path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { native } from '../../src/io/native';
import { parseIPv4 } from '../../src/wire/address';
import { checkIpv4, emitIpv4, IPPROTO_TCP, IPPROTO_UDP } from '../../src/wire/ipv4';
import { emitTcp, TCP_ACK, TCP_FIN, TCP_PSH, tcpChecksumValid } from '../../src/wire/tcp';
import { checkUdp, emitUdp } from '../../src/wire/udp';
import type { CoalesceFacts, GsoFacts, TsoFacts } from './offload.child';

const test = suite('offload (TSO split, checksums, TUN coalescing, UDP GSO/GRO)');
const ROOT = path.join(__dirname, '..', '..');
const CHILD = path.join(__dirname, 'offload.child.ts');
const SRC = parseIPv4('10.1.0.2');
const DST = parseIPv4('10.1.0.1');
const TCP_CWR = 0x80;

/** An IPv4/TCP super-packet at buf[off...]: 20 + 20 header bytes, `payload` bytes of pattern; returns its length. */
function superPacket(buf: Buffer, off: number, payload: number, flags: number, id = 0x1234, seq = 0xfffff000): number {
  for (let i = 0; i < payload; i++) buf[off + 40 + i] = (i * 11 + (i >>> 9)) & 0xff;
  emitIpv4({ source: SRC, destination: DST, protocol: IPPROTO_TCP, payloadLength: 20 + payload, ttl: 64, identification: id, dontFragment: true }, buf, off);
  emitTcp({ srcPort: 1000, dstPort: 2000, seq, ack: 42, flags, window: 100, payloadLength: payload }, buf, off + 20);
  return 40 + payload;
}

interface ChildResult<Facts> {
  code: number | null;
  stdout: string;
  stderr: string;
  facts: Facts;
}

function runInNamespace<Facts>(args: string[]): Promise<ChildResult<Facts>> {
  const namespace = `vxt-off-${process.pid}-${args[0]}`;
  execFileSync('ip', ['netns', 'add', namespace]);
  const command = ['ip', 'netns', 'exec', namespace, process.execPath, '-r', 'tsx/cjs', CHILD, ...args];
  return new Promise<ChildResult<Facts>>((resolve) => {
    execFile(command[0], command.slice(1), { cwd: ROOT, timeout: 30000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
      let facts = {} as Facts;
      try {
        facts = JSON.parse(stdout.trim().split('\n').pop() ?? '') as Facts;
      } catch {
        // the assertions on `code` show stdout and stderr
      }
      resolve({ code, stdout, stderr, facts });
    });
  }).finally(() => execFileSync('ip', ['netns', 'delete', namespace]));
}

function explain(result: ChildResult<unknown>): string {
  return `child exited ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`;
}

test('tcpSegment: prefix, lengths, IDs, seq (across the 2^32 wrap), flags, checksums, payload', () => {
  const addon = native();
  const slab = Buffer.alloc(8000);
  const at = 100;
  const len = superPacket(slab, at, 3000, TCP_ACK | TCP_PSH | TCP_FIN | TCP_CWR);
  const prefix = Buffer.alloc(40);
  for (let i = 0; i < 22; i++) prefix[10 + i] = 0xa0 + i;
  const out = Buffer.alloc(8000);
  const segLengths = new Uint32Array(8);
  const n = addon.tcpSegment(slab, at, len, 40, 1400, 20, out, 7, prefix, 10, 22, segLengths);
  assert.is(n, 3);
  assert.equal(Array.from(segLengths.subarray(0, 3)), [22 + 40 + 1400, 22 + 40 + 1400, 22 + 40 + 200]);
  let off = 7;
  const payload: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    assert.ok(out.subarray(off, off + 22).equals(prefix.subarray(10, 32)), `segment ${i}: prefix`);
    const ip = off + 22;
    const segLen = segLengths[i] - 22;
    assert.is(checkIpv4(out, ip, segLen), undefined, `segment ${i}: IPv4 header`);
    assert.is(out.readUInt16BE(ip + 2), segLen);
    assert.is(out.readUInt16BE(ip + 4), 0x1234 + i);
    assert.ok(tcpChecksumValid(out, ip), `segment ${i}: TCP checksum`);
    assert.is(out.readUInt32BE(ip + 24), (0xfffff000 + i * 1400) >>> 0);
    const flags = out[ip + 33];
    assert.is(flags, TCP_ACK | (i === 0 ? TCP_CWR : 0) | (i === 2 ? TCP_PSH | TCP_FIN : 0), `segment ${i}: flags`);
    payload.push(out.subarray(ip + 40, ip + segLen));
    off += segLengths[i];
  }
  assert.ok(Buffer.concat(payload).equals(slab.subarray(at + 40, at + len)));
  assert.ok(out.subarray(0, 7).equals(Buffer.alloc(7)), 'nothing written before outOff');
});

test('tcpSegment: -1 for what cannot be segmented, errors for bad arguments', () => {
  const addon = native();
  const slab = Buffer.alloc(4000);
  const len = superPacket(slab, 0, 3000, TCP_ACK);
  const out = Buffer.alloc(8000);
  const none = Buffer.alloc(0);
  const seg = new Uint32Array(8);
  const call = (patch: Partial<{ off: number; len: number; hdr: number; gso: number; start: number; out: Buffer; seg: Uint32Array }>): number =>
    addon.tcpSegment(slab, patch.off ?? 0, patch.len ?? len, patch.hdr ?? 40, patch.gso ?? 1400, patch.start ?? 20, patch.out ?? out, 0, none, 0, 0, patch.seg ?? seg);
  assert.is(call({}), 3);
  assert.is(call({ out: Buffer.alloc(3000) }), -1, 'out too small');
  assert.is(call({ seg: new Uint32Array(2) }), -1, 'segLengths too small');
  assert.is(call({ hdr: 30 }), -1, 'hdrLen shorter than the headers');
  assert.is(call({ start: 24 }), -1, 'csumStart is not the IPv4 header length');
  assert.is(call({ gso: 0 }), -1);
  assert.is(call({ len: len - 1 }), -1, 'IPv4 total length disagrees');
  assert.is(call({ hdr: 1000 }), 3, 'a kernel hdr_len covering more than the headers is accepted');
  slab[9] = IPPROTO_UDP;
  assert.is(call({}), -1, 'not TCP');
  slab[9] = IPPROTO_TCP;
  assert.throws(() => call({ len: 4001 }), (e: unknown) => e instanceof RangeError);
  assert.throws(() => addon.tcpSegment(slab, 0, len, 40, 1400, 20, slab, 100, none, 0, 0, seg), (e: unknown) => e instanceof RangeError && /overlaps/.test(e.message));
  assert.throws(() => addon.tcpSegment(slab, 0, len, 40, 1400, 20, out, 0, none, 0, 5, seg), (e: unknown) => e instanceof RangeError);
  assert.throws(() => (addon.tcpSegment as (...args: unknown[]) => number)(slab, -1, len), (e: unknown) => e instanceof TypeError);
  assert.throws(() => (addon.tcpSegment as (...args: unknown[]) => number)('x'), (e: unknown) => e instanceof TypeError);
});

test('completeChecksum: finishes a UDP pseudo-header partial sum; errors for bad regions', () => {
  const addon = native();
  const buf = Buffer.alloc(200);
  const at = 10;
  for (let i = 0; i < 51; i++) buf[at + 28 + i] = i * 5;
  emitIpv4({ source: SRC, destination: DST, protocol: IPPROTO_UDP, payloadLength: 8 + 51, ttl: 64 }, buf, at);
  emitUdp({ srcPort: 5, dstPort: 6, payloadLength: 51, source: SRC, destination: DST }, buf, at + 20);
  const good = buf.readUInt16BE(at + 26);
  // What the kernel hands over with NEEDS_CSUM: the folded pseudo-header sum, not complemented.
  let sum = (SRC >>> 16) + (SRC & 0xffff) + (DST >>> 16) + (DST & 0xffff) + IPPROTO_UDP + 59;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  buf.writeUInt16BE(sum, at + 26);
  assert.is(checkUdp(buf, at + 20, 59, SRC, DST), 'bad-checksum');
  addon.completeChecksum(buf, at, 79, 20, 6);
  assert.is(buf.readUInt16BE(at + 26), good);
  assert.is(checkUdp(buf, at + 20, 59, SRC, DST), undefined);
  assert.throws(() => addon.completeChecksum(buf, at, 79, 78, 6), (e: unknown) => e instanceof RangeError);
  assert.throws(() => addon.completeChecksum(buf, 190, 79, 20, 6), (e: unknown) => e instanceof RangeError);
});

test('udpSendGso / udpRecvGro / tunWriteCoalesced: argument errors, nothing sent', () => {
  const addon = native();
  const slab = Buffer.alloc(70000);
  const lo = parseIPv4('127.0.0.1');
  const fd = addon.udpOpen(lo, 0, 0, 0);
  try {
    const isRange = (e: unknown): boolean => e instanceof RangeError;
    assert.throws(() => addon.udpSendGso(fd, slab, 0, 0, 1400, lo, 9), isRange);
    assert.throws(() => addon.udpSendGso(fd, slab, 0, 65508, 1400, lo, 9), isRange);
    assert.throws(() => addon.udpSendGso(fd, slab, 0, 65 * 100, 100, lo, 9), isRange, '65 segments');
    assert.throws(() => addon.udpSendGso(fd, slab, 0, 1000, 0, lo, 9), isRange);
    assert.throws(() => addon.udpSendGso(fd, slab, 69000, 2000, 1000, lo, 9), isRange);
    assert.throws(() => addon.udpSendGso(fd, slab, 0, 1000, 100, lo, 70000), isRange);
    const t = new Uint32Array(4);
    assert.throws(() => addon.udpRecvGro(fd, slab, t, t, t, new Uint16Array(4), new Uint32Array(2), 4), isRange);
    assert.throws(() => (addon.udpRecvGro as (...args: unknown[]) => number)(fd, slab, t, t, t, new Uint16Array(4), new Uint16Array(4), 4), (e: unknown) => e instanceof TypeError);
    assert.throws(() => addon.tunWriteCoalesced(fd, slab, t, t, 5), isRange, 'count beyond the tables');
    const offsets = Uint32Array.of(4);
    const lengths = Uint32Array.of(40);
    assert.throws(() => addon.tunWriteCoalesced(fd, slab, offsets, lengths, 1, Buffer.alloc(65545)), (e: unknown) => isRange(e) && /headroom/.test((e as Error).message));
    assert.throws(() => (addon.udpSetGro as (...args: unknown[]) => void)(fd, 1), (e: unknown) => e instanceof TypeError);
  } finally {
    addon.close(fd);
  }
});

test('TSO read: a TCP stream through an offload TUN arrives as super-packets that split into valid segments', async () => {
  const result = await runInNamespace<TsoFacts>(['tso', `vxt-ot${process.pid}`]);
  assert.is(result.code, 0, explain(result));
  const f = result.facts;
  assert.ok(f.superPackets.length >= 1, 'at least one GSO super-packet');
  for (const p of f.superPackets) {
    assert.is(p.gsoType, 1, 'VIRTIO_NET_HDR_GSO_TCPV4');
    assert.ok(p.gsoSize > 0 && p.gsoSize <= 1460, `gso_size ${p.gsoSize}`);
    assert.is(p.csumStart, 20);
    assert.is(p.csumOffset, 16);
    assert.ok(p.hdrLen >= 40 && p.hdrLen < p.length, `hdr_len ${p.hdrLen}`);
    assert.ok(p.segments >= 2);
  }
  assert.ok(f.segmentsChecked > f.superPackets.length);
  assert.is(f.unsegmentable, 0);
  assert.is(f.badIpChecksums, 0);
  assert.is(f.badTcpChecksums, 0);
  assert.is(f.seqBreaks, 0);
  assert.is(f.oversize, 0);
  assert.is(f.payloadMismatches, 0);
  // Partial checksums (NEEDS_CSUM) completed in place: the ACKs of the stream and one UDP datagram.
  assert.ok(f.udpNeedsCsum, 'the UDP datagram arrived with NEEDS_CSUM');
  assert.not.ok(f.udpChecksumValidBefore, 'its checksum was partial');
  assert.ok(f.udpChecksumValidAfter, 'completeChecksum made it valid');
  assert.is(f.needsCsumTcpValid, f.needsCsumTcp);
  // The segments reflected back through writeCoalesced reached the listener: the whole stream, intact.
  assert.is(f.accepted, f.written);
  assert.is(f.received, 256 * 1024, f.error);
  assert.ok(f.intact);
});

test('UDP GSO + GRO on loopback: 40 x 1400 B in one send; one coalesced buffer with GRO, 40 datagrams without', async () => {
  const result = await runInNamespace<GsoFacts>(['gso']);
  assert.is(result.code, 0, explain(result));
  const f = result.facts;
  assert.is(f.groResult, 'sent');
  assert.ok(f.groBuffers.length >= 1 && f.groBuffers.length <= 4, JSON.stringify(f.groBuffers));
  for (const b of f.groBuffers) assert.ok(b.segSize === 1400 || (b.segSize === 0 && b.length <= 1400), JSON.stringify(b));
  assert.ok(f.groIntact);
  assert.is(f.plainResult, 'sent');
  assert.equal(f.plainDatagrams, new Array<number>(40).fill(1400));
  assert.ok(f.plainIntact);
  assert.is(f.splitResult, 'split', 'a segment above the route MTU: EMSGSIZE, sent one by one');
  assert.equal(f.splitDatagrams, [1600, 1600, 1600]);
  assert.ok(f.splitIntact);
  assert.ok(f.noCsumResult === 'sent' || f.noCsumResult === 'fallback', f.noCsumResult);
  assert.is(f.noCsumTxPackets, 3);
});

test('tunWriteCoalesced: 30 segments of one flow become one write; others alone; bad checksums and holes split runs', async () => {
  const result = await runInNamespace<CoalesceFacts>(['coalesce', `vxt-oc${process.pid}`]);
  assert.is(result.code, 0, explain(result));
  const f = result.facts;
  assert.equal(f.mixed, { count: 32, accepted: 32, rxDelta: 3 }, 'UDP, one super-packet of 30, UDP');
  assert.equal(f.badChecksum, { count: 3, accepted: 3, rxDelta: 3 }, 'a corrupt segment is never coalesced');
  assert.equal(f.gap, { count: 4, accepted: 4, rxDelta: 2 }, 'a seq hole ends the run');
});

test.run();
