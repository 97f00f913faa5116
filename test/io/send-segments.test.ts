// The native rawSendSegments without root: given a UDP socket's fd (and a port) it sends a super-packet's segments as
// UDP payloads on 127.0.0.1, so the cut, the headers, both checksums and the one sendmmsg run on any machine; the raw
// IP-in-IP socket itself is tested in test/net/speed-ipip.test.ts.
import fc from 'fast-check';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { PacketBatch } from '../../src/io/batch';
import { native } from '../../src/io/native';
import { SEGMENTS_MAX } from '../../src/io/raw';
import { parseIPv4 } from '../../src/wire/address';
import { checkSegments, superPacket } from '../support/segments';

const Test = suite('rawSendSegments (native, over UDP on loopback)');
const LOOPBACK = parseIPv4('127.0.0.1');

function withSockets(body: (sender: number, receiver: number, port: number) => void): void {
  const sender = native().udpOpen(LOOPBACK, 0, 0, 0);
  const receiver = native().udpOpen(LOOPBACK, 0, 8 << 20, 0);
  try {
    body(sender, receiver, native().udpLocalPort(receiver));
  } finally {
    native().close(sender);
    native().close(receiver);
  }
}

/** Slots large enough for any UDP datagram: a truncated one would read as length 0. */
const SLOT = 65536;
const rx = new PacketBatch(Buffer.alloc(128 * SLOT), 128);

/** Everything waiting on the receiver (loopback delivers within the send call). */
function drain(fd: number): Buffer[] {
  const out: Buffer[] = [];
  for (;;) {
    for (let i = 0; i < 128; i++) {
      rx.offsets[i] = i * SLOT;
      rx.lengths[i] = SLOT;
    }
    const n = native().udpRecv(fd, rx.slab, rx.offsets, rx.lengths, rx.addrs, rx.ports, 128);
    for (let i = 0; i < n; i++) out.push(Buffer.from(rx.slab.subarray(rx.offsets[i], rx.offsets[i] + rx.lengths[i])));
    if (n === 0) return out;
  }
}

const SHAPES = [
  { payload: 64000, mss: 1440, segments: 45 },
  { payload: 60001, mss: 1448, segments: 42 }, // odd last chunk: the checksum's padded tail
  { payload: 65495, mss: 536, segments: 123 },
  { payload: 1440, mss: 1440, segments: 1 },
  { payload: 0, mss: 1440, segments: 1 },
];

for (const { payload, mss, segments } of SHAPES) {
  Test(`${payload} B at MSS ${mss}: ${segments} segments in order, headers and checksums right, payload rebuilt`, () => {
    withSockets((sender, receiver, port) => {
      const packet = superPacket(payload, parseIPv4('10.17.1.1'), parseIPv4('10.17.2.1'));
      const slab = Buffer.alloc(packet.length + 100);
      packet.copy(slab, 37);
      const before = Buffer.from(slab);
      const lengths = new Uint32Array(SEGMENTS_MAX);
      const scratch = Buffer.alloc(SEGMENTS_MAX * 120);
      assert.is(native().rawSendSegments(sender, slab, 37, packet.length, 40, mss, 20, LOOPBACK, port, scratch, lengths), segments);
      const received = drain(receiver);
      assert.is(received.length, segments);
      assert.equal(Array.from(lengths.subarray(0, segments)), received.map((d) => d.length), 'segLengths says each length');
      const { problems, payloadMatches } = checkSegments(received, packet, mss, false);
      assert.equal(problems, []);
      assert.ok(payloadMatches);
      assert.ok(slab.equals(before), 'the super-packet is only read');
    });
  });
}

Test('what cannot be segmented is refused with -1 and nothing is sent', () => {
  withSockets((sender, receiver, port) => {
    const lengths = new Uint32Array(SEGMENTS_MAX);
    const scratch = Buffer.alloc(SEGMENTS_MAX * 120);
    const send = (p: Buffer, gsoSize = 1440, csumStart = 20, segLengths = lengths): number =>
      native().rawSendSegments(sender, p, 0, p.length, 40, gsoSize, csumStart, LOOPBACK, port, scratch, segLengths);
    const good = superPacket(3000, 1, 2);
    const udp = Buffer.from(good);
    udp[9] = 17;
    assert.is(send(udp), -1, 'not TCP');
    const lying = Buffer.from(good);
    lying.writeUInt16BE(2000, 2);
    assert.is(send(lying), -1, 'IPv4 total length is not the packet length');
    assert.is(send(good, 0), -1, 'gso size 0');
    assert.is(send(good, 1440, 24), -1, 'csum start is not the IPv4 header length');
    assert.is(send(superPacket(65000, 1, 2), 100), -1, 'more than 128 segments');
    assert.is(send(good, 1440, 20, new Uint32Array(2)), -1, 'segLengths too short for 3 segments');
    assert.throws(() => native().rawSendSegments(sender, good, 10, good.length, 40, 1440, 20, LOOPBACK, port, scratch, lengths), /outside its buffer/);
    assert.is(drain(receiver).length, 0);
  });
});

/** The valid value 9 times in 10, else anything `other` makes: each run lies about a field or two, not all of them. */
function mostly<T, U>(valid: T, other: fc.Arbitrary<U>): fc.Arbitrary<T | U> {
  return fc.oneof({ arbitrary: fc.constant(valid), weight: 9 }, { arbitrary: other, weight: 1 });
}

Test('lying headers and arguments never crash it: -1 and nothing sent, or every segment out and well formed', () => {
  withSockets((sender, receiver, port) => {
    const lengths = new Uint32Array(SEGMENTS_MAX);
    const scratch = Buffer.alloc(SEGMENTS_MAX * 120);
    let sentSome = 0;
    fc.assert(
      fc.property(
        fc.record({
          payload: fc.oneof(fc.integer({ min: 0, max: 3000 }), fc.integer({ min: 0, max: 65495 })),
          versionIhl: mostly(0x45, fc.integer({ min: 0, max: 255 })),
          protocol: mostly(6, fc.integer({ min: 0, max: 255 })),
          totalLength: mostly(null, fc.integer({ min: 0, max: 0xffff })),
          dataOffset: mostly(0x50, fc.integer({ min: 0, max: 255 })),
          hdrLen: mostly(40, fc.integer({ min: 0, max: 0xffff })),
          gsoSize: mostly(1448, fc.integer({ min: 0, max: 0xffff })),
          csumStart: mostly(20, fc.integer({ min: 0, max: 0xffff })),
          cut: mostly(0, fc.integer({ min: 0, max: 60 })),
        }),
        (r) => {
          const whole = superPacket(r.payload, parseIPv4('10.17.1.1'), parseIPv4('10.17.2.1'));
          whole[0] = r.versionIhl;
          whole[9] = r.protocol;
          whole[32] = r.dataOffset;
          if (r.totalLength !== null) whole.writeUInt16BE(r.totalLength, 2);
          const packet = whole.subarray(0, Math.max(0, whole.length - r.cut)); // a read shorter than its headers say
          const result = native().rawSendSegments(sender, packet, 0, packet.length, r.hdrLen, r.gsoSize, r.csumStart, LOOPBACK, port, scratch, lengths);
          const received = drain(receiver);
          if (result === -1) {
            assert.is(received.length, 0, 'refused: nothing sent');
            return;
          }
          // A segment above UDP's 65507-byte limit fails on its own (EMSGSIZE) and is skipped, as above a raw route's MTU.
          assert.ok(result >= 0 && result <= SEGMENTS_MAX);
          if (result > 0) sentSome++;
          assert.is(received.length, result);
          const headers = (packet[0] & 15) * 4 + (packet[(packet[0] & 15) * 4 + 12] >> 4) * 4;
          let carried = 0;
          received.forEach((d, i) => {
            assert.is(d.length, lengths[i]);
            assert.is(d.readUInt16BE(2), d.length, 'each segment says its own length');
            assert.ok(d.length - headers <= r.gsoSize);
            carried += d.length - headers;
          });
          // Only when every segment fits the UDP carrier (a full-size one may be skipped, as the comment above says).
          if (headers + Math.min(r.gsoSize, packet.length - headers) <= 65507) {
            assert.is(carried, packet.length - headers, 'the segments carry exactly the payload');
          }
        },
      ),
      { numRuns: Number(process.env.VXTUN_FUZZ_RUNS ?? 150) },
    );
    assert.ok(sentSome > 0, 'some runs were well-formed enough to be sent');
  });
});

Test.run();
