// Property-based tests (fast-check): random and mutated frames through the decapsulation path and the TUN path of an
// engine over fakes. Properties: nothing throws (not even inside the engine: no engine/internal-error), no pool slot
// leaks, and every input is accounted for: delivered, answered (ARP) or counted under a named drop reason.
// A rate-limited ICMP error is not an input's fate but a reply we did not make, so it is left out of the sum.
import fc from 'fast-check';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Counters } from '../../src/dataplane/counters';
import type { EncapName } from '../../src/dataplane/tables';
import { ARP_REQUEST, emitArp } from '../../src/wire/arp';
import { emitIpv4 } from '../../src/wire/ipv4';
import { emitIpipOuter } from '../../src/wire/ipip';
import { type FakeNode, fakePair, vxlanFrame } from '../support/fake-nodes';
import { ip } from '../support/packets';

const Fuzz = suite('fuzz');
const RUNS = Number(process.env.VXTUN_FUZZ_RUNS ?? 150);

/** Addresses that hit every admission branch: ours, the sender's, a third node's, outside the overlay, broadcast. */
const ADDRESSES = ['10.17.1.0', '10.17.1.9', '10.17.2.0', '10.17.2.200', '10.17.3.4', '10.17.99.1', '192.168.0.1', '255.255.255.255', '0.0.0.0'].map(ip);
const address = fc.constantFrom(...ADDRESSES);
/** Mostly what a good peer (10.17.1.0/24) sends to us (10.17.2.0/24), so that many inputs get far; sometimes anything. */
const source = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(ip('10.17.1.0'), ip('10.17.1.9')) }, { weight: 1, arbitrary: address });
const destination = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(ip('10.17.2.0'), ip('10.17.2.200')) }, { weight: 1, arbitrary: address });

interface InnerSpec {
  src: number;
  dst: number;
  protocol: number;
  payload: number;
  df: boolean;
  mf: boolean;
  fragmentOffset: number;
  tos: number;
}

const innerSpec: fc.Arbitrary<InnerSpec> = fc.record({
  src: source,
  dst: destination,
  protocol: fc.constantFrom(1, 6, 17, 4, 47, 255),
  payload: fc.oneof({ weight: 2, arbitrary: fc.integer({ min: 0, max: 64 }) }, { weight: 2, arbitrary: fc.integer({ min: 0, max: 1400 }) }, { weight: 1, arbitrary: fc.constant(9000 - 20) }),
  df: fc.boolean(),
  mf: fc.boolean(),
  fragmentOffset: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 8191 }).map((n) => n * 8)),
  tos: fc.integer({ min: 0, max: 255 }),
});

function innerPacket(s: InnerSpec): Buffer {
  const packet = Buffer.alloc(20 + s.payload);
  for (let i = 20; i < packet.length; i++) packet[i] = (i * 7) & 0xff;
  emitIpv4({ source: s.src, destination: s.dst, protocol: s.protocol, payloadLength: s.payload, ttl: 64, dscpEcn: s.tos, dontFragment: s.df, moreFragments: s.mf, fragmentOffset: s.fragmentOffset }, packet, 0);
  return packet;
}

/** Mutations applied after building: each is one kind of lie a sender can tell. */
const mutation = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('none' as const) }) },
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('byte' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('ihl' as const), value: fc.integer({ min: 0, max: 15 }) }),
  fc.record({ kind: fc.constant('total-length' as const), value: fc.integer({ min: 0, max: 65535 }) }),
  fc.record({ kind: fc.constant('flags' as const), value: fc.integer({ min: 0, max: 255 }) }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

/** Applies a mutation to the inner IPv4 header at `ipOff` of `frame` (or anywhere in it); returns the new frame. */
function mutate(frame: Buffer, ipOff: number, m: Mutation): Buffer {
  const f = Buffer.from(frame);
  switch (m.kind) {
    case 'truncate':
      return f.subarray(0, m.at % (f.length + 1));
    case 'byte':
      if (f.length > 0) f[m.at % f.length] = m.value;
      return f;
    case 'ihl':
      if (f.length > ipOff) f[ipOff] = (f[ipOff] & 0xf0) | m.value;
      return f;
    case 'total-length':
      if (f.length >= ipOff + 4) f.writeUInt16BE(m.value, ipOff + 2);
      return f;
    case 'flags':
      if (f.length > 0) f[0] = m.value; // VXLAN flags (I bit and reserved bits) or the outer IPv4 version/IHL
      return f;
    case 'none':
      return f;
  }
}

const vxlanShape = fc.record({
  inner: innerSpec,
  vni: fc.constantFrom(1, 1, 1, 2, 0xffffff),
  etherType: fc.constantFrom(0x0800, 0x0800, 0x0800, 0x0806, 0x86dd, 0x8100, 0x0000),
  srcMac: fc.constantFrom('peer', 'peer', 'peer', 'ours', 'other'),
  dstMac: fc.constantFrom('ours', 'ours', 'broadcast', 'other'),
  arpTarget: address,
  reserved: fc.integer({ min: 0, max: 0xffffffff }),
  mutation,
  sender: fc.constantFrom('peer', 'peer', 'peer', 'stranger'),
});

const ipipShape = fc.record({ inner: innerSpec, outerProtocol: fc.constantFrom(4, 4, 4, 17), mutation, sender: fc.constantFrom('peer', 'peer', 'stranger') });

const STRANGER = ip('198.51.100.66');

function vxlanDatagram(s: typeof vxlanShape extends fc.Arbitrary<infer T> ? T : never, a: FakeNode, b: FakeNode): Buffer {
  const mac = (which: string): number => (which === 'peer' ? a.mac : which === 'ours' ? b.mac : which === 'broadcast' ? 0xffffffffffff : 0x0200000000ee);
  let payload: Buffer;
  if (s.etherType === 0x0806) {
    payload = Buffer.alloc(28);
    emitArp({ operation: ARP_REQUEST, senderMac: a.mac, senderIp: ip('10.17.1.0'), targetMac: 0, targetIp: s.arpTarget }, payload, 0);
  } else {
    payload = innerPacket(s.inner);
  }
  const frame = vxlanFrame(payload, mac(s.srcMac), mac(s.dstMac), s.vni, s.etherType);
  // Reserved bits (bytes 1-3 and 7): receivers ignore them (RFC 7348 section 5).
  frame.writeUIntBE(s.reserved >>> 8, 1, 3);
  frame[7] = s.reserved & 0xff;
  return mutate(frame, 22, s.mutation);
}

function ipipDatagram(s: typeof ipipShape extends fc.Arbitrary<infer T> ? T : never, from: number, b: FakeNode): Buffer {
  const inner = innerPacket(s.inner);
  const outer = Buffer.alloc(20 + inner.length);
  inner.copy(outer, 20);
  emitIpipOuter({ source: from, destination: b.underlayIp }, outer, 0);
  if (s.outerProtocol !== 4) outer[9] = s.outerProtocol;
  return mutate(outer, 20, s.mutation);
}

/** Inputs that left no trace: received units minus what was delivered, answered or counted. */
function unaccountedInbound(c: Counters, units: number): number {
  return units - (c.tunOut.packets + c.arpReplies + c.drops.total - c.drops.get('icmp', 'rate-limited'));
}

function assertClean(node: FakeNode): void {
  const c = node.engine.counters;
  assert.is(c.drops.get('engine', 'internal-error'), 0, `an exception inside the engine: ${JSON.stringify(c.drops)}`);
  assert.is(node.pool.inUse, 0, 'every slot back in the pool');
  assert.not.ok(node.engine.isStopped);
}

for (const gro of [false, true]) {
  Fuzz(`vxlan decapsulation${gro ? ' (UDP GRO batches with odd segment sizes)' : ''}: random and mutated datagrams are delivered or counted, never thrown`, () => {
    fc.assert(
      fc.property(fc.array(vxlanShape, { minLength: 1, maxLength: 24 }), fc.integer({ min: 1, max: 2000 }), (shapes, oddSegment) => {
        const { a, b } = fakePair('vxlan', { gro, poolSize: gro ? 80 : 128 });
        let units = 0;
        for (const s of shapes) {
          const from = s.sender === 'peer' ? a.underlayIp : STRANGER;
          const d = vxlanDatagram(s, a, b);
          if (!gro) {
            b.socket.inject(d, from, 40000);
            units++;
            continue;
          }
          // A GRO buffer: this datagram several times at a segment size that may not match its length.
          const copies = 1 + (oddSegment % 5);
          const buffer = Buffer.concat(Array.from({ length: copies }, () => d));
          const segment = oddSegment % 3 === 0 ? oddSegment : d.length;
          b.socket.injectGro(buffer, segment, from, 40000);
          units += segment > 0 && segment < buffer.length ? Math.ceil(buffer.length / segment) : 1;
        }
        b.engine.pumpInbound();
        b.engine.pumpInbound();
        assertClean(b);
        assert.is(b.engine.counters.underlayIn.packets, units);
        assert.is(unaccountedInbound(b.engine.counters, units), 0, JSON.stringify(b.engine.counters));
      }),
      { numRuns: gro ? Math.ceil(RUNS / 3) : RUNS },
    );
  });
}

Fuzz('ipip decapsulation: random and mutated datagrams (outer and inner) are delivered or counted', () => {
  fc.assert(
    fc.property(fc.array(ipipShape, { minLength: 1, maxLength: 24 }), (shapes) => {
      const { a, b } = fakePair('ipip');
      for (const s of shapes) {
        const from = s.sender === 'peer' ? a.underlayIp : STRANGER;
        b.socket.inject(ipipDatagram(s, from, b), from);
      }
      b.engine.pumpInbound();
      assertClean(b);
      assert.is(unaccountedInbound(b.engine.counters, shapes.length), 0, JSON.stringify(b.engine.counters));
    }),
    { numRuns: RUNS },
  );
});

Fuzz('nothing gets in: whatever the sender and the lies, only packets from a leased sender\'s subnet to ours reach the TUN', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.constantFrom<EncapName>('vxlan'), vxlanShape), { minLength: 1, maxLength: 16 }), (cases) => {
      const { a, b } = fakePair('vxlan');
      for (const [, s] of cases) b.socket.inject(vxlanDatagram(s, a, b), s.sender === 'peer' ? a.underlayIp : STRANGER, 40000);
      b.engine.pumpInbound();
      for (const packet of b.tun.written) {
        assert.ok(a.subnet.address === (packet.readUInt32BE(12) & 0xffffff00) >>> 0, 'inner source in the sender\'s lease');
        assert.ok(b.subnet.address === (packet.readUInt32BE(16) & 0xffffff00) >>> 0, 'inner destination in ours');
      }
    }),
    { numRuns: RUNS },
  );
});

Fuzz('TUN path: random and mutated packets (bad IHL, lying lengths, fragments, zero length, 9000 bytes) are sent or counted', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(innerSpec, mutation), { minLength: 1, maxLength: 40 }), (inputs) => {
      for (const encap of ['vxlan', 'ipip'] as const) {
        const { a } = fakePair(encap);
        for (const [spec, m] of inputs) a.tun.inject(mutate(innerPacket(spec), 0, m));
        a.engine.pumpOutbound();
        assertClean(a);
        const c = a.engine.counters;
        assert.is(c.tunIn.packets, inputs.length);
        assert.is(c.underlayOut.packets + c.drops.total - c.drops.get('icmp', 'rate-limited'), inputs.length, JSON.stringify(c));
      }
    }),
    { numRuns: RUNS },
  );
});

/** A TCP/IPv4 packet to 10.17.2.9 with `payload` bytes: a super-packet when larger than its MSS. */
function tcpPacket(payload: number): Buffer {
  const packet = Buffer.alloc(40 + payload);
  emitIpv4({ source: ip('10.17.1.5'), destination: ip('10.17.2.9'), protocol: 6, payloadLength: 20 + payload, ttl: 64, dontFragment: true }, packet, 0);
  packet.writeUInt16BE(40000, 20);
  packet.writeUInt16BE(5201, 22);
  packet.writeUInt32BE(1000, 24);
  packet[32] = 0x50; // data offset 5
  packet[33] = 0x18; // ACK | PSH
  return packet;
}

const vnetShape = fc.record({
  flags: fc.constantFrom(0, 1, 2, 0xff),
  gsoType: fc.constantFrom(0, 1, 1, 3, 4, 0x80),
  hdrLen: fc.oneof(fc.constant(40), fc.integer({ min: 0, max: 0xffff })),
  gsoSize: fc.oneof(fc.constant(1400), fc.integer({ min: 0, max: 0xffff })),
  csumStart: fc.oneof(fc.constant(20), fc.integer({ min: 0, max: 0xffff })),
  csumOffset: fc.oneof(fc.constant(16), fc.integer({ min: 0, max: 0xffff })),
  payload: fc.oneof(fc.integer({ min: 0, max: 3000 }), fc.integer({ min: 0, max: 65495 })),
  mutation,
});

Fuzz('offload TUN reads: virtio_net_hdr with lying gso/checksum fields never throw; each read is sent or counted', () => {
  fc.assert(
    fc.property(fc.array(vnetShape, { minLength: 1, maxLength: 6 }), (reads) => {
      const { a } = fakePair('vxlan', { offload: true, poolSize: 40 });
      const c = a.engine.counters;
      for (const r of reads) {
        const packet = mutate(tcpPacket(r.payload), 0, r.mutation);
        const read = Buffer.alloc(10 + packet.length);
        read[0] = r.flags;
        read[1] = r.gsoType;
        read.writeUInt16LE(r.hdrLen, 2);
        read.writeUInt16LE(r.gsoSize, 4);
        read.writeUInt16LE(r.csumStart, 6);
        read.writeUInt16LE(r.csumOffset, 8);
        packet.copy(read, 10);
        const before = c.underlayOut.packets + c.drops.total;
        a.tun.inject(read);
        a.engine.pumpOutbound();
        assert.ok(c.underlayOut.packets + c.drops.total > before, `a read left no trace: ${JSON.stringify(r)}`);
      }
      assertClean(a);
    }),
    { numRuns: Math.ceil(RUNS / 2) },
  );
});

Fuzz.run();
