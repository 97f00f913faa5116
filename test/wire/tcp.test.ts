import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseIPv4 } from '../../src/wire/address';
import { foldChecksum, pseudoHeaderSum } from '../../src/wire/checksum';
import { WireError } from '../../src/wire/errors';
import { IPPROTO_TCP, emitIpv4 } from '../../src/wire/ipv4';
import {
  TCP_ACK,
  TCP_FIN,
  TCP_HEADER_LEN,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  TcpView,
  checkTcp,
  emitTcp,
  fillTcpChecksum,
  parseTcp,
  tcpChecksum,
  tcpChecksumValid,
} from '../../src/wire/tcp';
import { TCP_RST_ACK_PACKET, TCP_SYN_PACKET } from './fixtures';

test('flag values', () => {
  assert.equal([TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK], [1, 2, 4, 8, 16]);
});

test('decode: a real SYN with 20 bytes of options', () => {
  const v = new TcpView(TCP_SYN_PACKET, 20);
  assert.is(v.srcPort, 55196);
  assert.is(v.dstPort, 80);
  assert.is(v.seq, 0xa17e8b6c);
  assert.is(v.ack, 0);
  assert.is(v.dataOffset, 40);
  assert.is(v.flags, TCP_SYN);
  assert.is(v.window, 65495);
  assert.is(v.checksum, 0xfe30);
  assert.is(v.payloadOffset, 60);
  assert.equal(parseTcp(TCP_SYN_PACKET, 20, 40), {
    srcPort: 55196,
    dstPort: 80,
    seq: 0xa17e8b6c,
    ack: 0,
    flags: TCP_SYN,
    window: 65495,
    payloadLength: 0,
  });
});

test('the SYN checksum is CHECKSUM_PARTIAL (pseudo-header only); the kernel completes its RST itself', () => {
  assert.ok(tcpChecksumValid(TCP_RST_ACK_PACKET, 0));
  assert.is(tcpChecksum(TCP_RST_ACK_PACKET, 0), 0xacf5);
  for (const packet of [TCP_SYN_PACKET]) {
    const length = packet.readUInt16BE(2) - 20;
    const partial = ~foldChecksum(pseudoHeaderSum(0x7f000001, 0x7f000001, IPPROTO_TCP, length)) & 0xffff;
    assert.is(packet.readUInt16BE(20 + 16), partial);
    assert.not.ok(tcpChecksumValid(packet, 0));
    const fixed = Buffer.from(packet);
    fillTcpChecksum(fixed, 0);
    assert.ok(tcpChecksumValid(fixed, 0));
    assert.is(fixed.readUInt16BE(36), tcpChecksum(packet, 0), 'tcpChecksum ignores the stored field');
  }
});

test('decode: the RST+ACK', () => {
  const r = parseTcp(TCP_RST_ACK_PACKET, 20, 20);
  assert.is(r.flags, TCP_RST | TCP_ACK);
  assert.is(r.ack, 0xa17e8b6d);
  assert.is(r.window, 0);
});

test('encode: emit reproduces the RST+ACK header byte for byte; round trip with payload', () => {
  const expected = TCP_RST_ACK_PACKET;
  const out = Buffer.from(expected);
  out.fill(0xcc, 20);
  const repr = { ...parseTcp(expected, 20, 20), source: 0x7f000001, destination: 0x7f000001 };
  assert.is(emitTcp(repr, out, 20), TCP_HEADER_LEN);
  assert.equal(out, expected);

  const src = parseIPv4('10.244.1.2');
  const dst = parseIPv4('10.244.2.3');
  const buf = Buffer.alloc(20 + 20 + 3);
  buf.write('GET', 40);
  emitIpv4({ source: src, destination: dst, protocol: IPPROTO_TCP, payloadLength: 23, ttl: 64 }, buf, 0);
  const seg = { srcPort: 33000, dstPort: 8080, seq: 0xfffffff0, ack: 12345, flags: TCP_PSH | TCP_ACK, window: 502, payloadLength: 3 };
  emitTcp({ ...seg, source: src, destination: dst }, buf, 20);
  assert.ok(tcpChecksumValid(buf, 0));
  assert.equal(parseTcp(buf, 20, 23), seg);
  const v = new TcpView(buf, 20);
  v.seq = 0x1_0000_0001; // sequence numbers wrap at 32 bits
  assert.is(v.seq, 1);
});

test('dataOffset setter keeps the reserved nibble', () => {
  const buf = Buffer.alloc(20);
  buf[12] = 0x01; // NS bit (RFC 3540) lives in the low nibble
  const v = new TcpView(buf, 0);
  v.dataOffset = 60;
  assert.is(buf[12], 0xf1);
  assert.is(v.dataOffset, 60);
});

test('checkTcp table', () => {
  const seg = TCP_SYN_PACKET.subarray(20); // 40 bytes, data offset 40
  const withOffset = (words: number): Buffer => {
    const b = Buffer.from(seg);
    b[12] = words << 4;
    return b;
  };
  const cases: Array<[string, Buffer, number, string | undefined]> = [
    ['valid', seg, 40, undefined],
    ['19 bytes', seg, 19, 'truncated'],
    ['len beyond buffer', seg, 41, 'truncated'],
    ['data offset 4 words', withOffset(4), 40, 'bad-data-offset'],
    ['data offset 0', withOffset(0), 40, 'bad-data-offset'],
    ['data offset past the segment', withOffset(11), 40, 'bad-data-offset'],
    ['data offset 5 with 20 bytes of payload', withOffset(5), 40, undefined],
  ];
  for (const [name, buf, len, expected] of cases) assert.is(checkTcp(buf, 0, len), expected, name);
  assert.throws(() => parseTcp(withOffset(4)), (e: unknown) => e instanceof WireError && e.problem === 'bad-data-offset');
});

test.run();
