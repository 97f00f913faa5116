// Property-based tests (fast-check) of the IPv6 paths (issue 12), as fuzz.test.ts does for IPv4: random and mutated
// IPv6 packets (extension-header chains of any shape, lying payload lengths, multicast and unspecified addresses,
// Neighbor Solicitations) through the decapsulation path over both underlays (and UDP GRO) and through the TUN path.
// Properties: nothing throws, no pool slot leaks, every input is delivered, answered or counted by reason, and only
// packets from the sender's IPv6 subnet to ours reach the TUN.
import fc from 'fast-check';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Counters } from '../../src/dataplane/counters';
import { ipv6Words } from '../../src/wire/address6';
import { icmpv6Checksum } from '../../src/wire/icmpv6';
import { emitIpv6 } from '../../src/wire/ipv6';
import { VNI, vxlanFrame } from '../support/fake-nodes';
import { type DualNode, dualPair, ip6 } from '../support/fake-nodes6';
import { ip } from '../support/packets';

const Fuzz6 = suite('fuzz: IPv6');
const RUNS = Number(process.env.VXTUN_FUZZ_RUNS ?? 150);

/** Addresses that hit every branch: the peer's subnet, ours (and our VTEP address), a third node's, none, multicast. */
const ADDRESSES = ['fd00:10:244:1::', 'fd00:10:244:1::9', 'fd00:10:244:2::', 'fd00:10:244:2::c8', 'fd00:10:244:3::4', 'fd00:10:244:99::1', '2001:db8::1', 'ff02::1', '::', 'fe80::1'].map(ip6);
const address = fc.constantFrom(...ADDRESSES);
const source = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(ip6('fd00:10:244:1::5'), ip6('fd00:10:244:1::9')) }, { weight: 1, arbitrary: address });
const destination = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(ip6('fd00:10:244:2::7'), ip6('fd00:10:244:2::c8')) }, { weight: 1, arbitrary: address });

/** One extension header: its type and its length field (0-3: 8-32 bytes, or an AH length). */
const extension = fc.record({ type: fc.constantFrom(0, 43, 44, 51, 60, 60), units: fc.integer({ min: 0, max: 3 }), fragmentOffset: fc.integer({ min: 0, max: 8191 }) });

const innerSpec = fc.record({
  src: source,
  dst: destination,
  extensions: fc.oneof({ weight: 3, arbitrary: fc.constant([]) }, { weight: 2, arbitrary: fc.array(extension, { maxLength: 10 }) }),
  upper: fc.constantFrom(6, 17, 58, 58, 59, 50),
  icmpType: fc.constantFrom(1, 2, 128, 129, 135, 136, 137),
  payload: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 0, max: 64 }) }, { weight: 2, arbitrary: fc.integer({ min: 0, max: 1450 }) }, { weight: 1, arbitrary: fc.constant(8952) }),
  hopLimit: fc.constantFrom(64, 255, 1, 0),
});
type InnerSpec = typeof innerSpec extends fc.Arbitrary<infer T> ? T : never;

function innerPacket(s: InnerSpec): Buffer {
  const exts: Buffer[] = [];
  for (const e of s.extensions) {
    const len = e.type === 44 ? 8 : e.type === 51 ? (e.units + 2) * 4 + 4 : (e.units + 1) * 8;
    const h = Buffer.alloc(e.type === 51 ? (e.units + 3) * 4 : len);
    if (e.type === 51) h[1] = e.units + 1;
    else if (e.type !== 44) h[1] = e.units;
    else h.writeUInt16BE(e.fragmentOffset << 3, 2);
    exts.push(h);
  }
  for (let i = 0; i < exts.length; i++) exts[i][0] = i + 1 < exts.length ? s.extensions[i + 1].type : s.upper;
  const body = Buffer.alloc(s.payload);
  for (let i = 0; i < body.length; i++) body[i] = (i * 7) & 0xff;
  if (s.upper === 58 && body.length > 0) body[0] = s.icmpType;
  const payload = Buffer.concat([...exts, body]);
  const packet = Buffer.alloc(40 + payload.length);
  emitIpv6({ source: s.src, destination: s.dst, nextHeader: exts.length ? s.extensions[0].type : s.upper, payloadLength: payload.length, hopLimit: s.hopLimit }, packet, 0);
  payload.copy(packet, 40);
  if (s.upper === 58 && exts.length === 0 && body.length >= 4) packet.writeUInt16BE(icmpv6Checksum(packet, 0, 40, body.length), 42);
  return packet;
}

/** A Neighbor Solicitation for `target` (ours, mostly), with a source link-layer option, valid or bent. */
function solicitation(targetOurs: boolean, hopLimit: number, bend: number): Buffer {
  const ns = Buffer.alloc(72);
  emitIpv6({ source: ip6('fd00:10:244:1::'), destination: ip6('ff02::1:ff00:0'), nextHeader: 58, payloadLength: 32, hopLimit }, ns, 0);
  ns[40] = 135;
  const target = ipv6Words(targetOurs ? ip6('fd00:10:244:2::') : ip6('fd00:10:244:2::1'));
  for (let i = 0; i < 4; i++) ns.writeUInt32BE(target[i], 48 + 4 * i);
  ns[64] = 1;
  ns[65] = bend === 1 ? 0 : 1;
  ns.writeUIntBE(0x0a0000000001, 66, 6);
  ns.writeUInt16BE(icmpv6Checksum(ns, 0, 40, 32), 42);
  if (bend === 2) ns[50] ^= 0xff;
  return ns;
}

const mutation = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('none' as const) }) },
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('byte' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('payload-length' as const), value: fc.integer({ min: 0, max: 65535 }) }),
  fc.record({ kind: fc.constant('next-header' as const), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('version' as const), value: fc.integer({ min: 0, max: 15 }) }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

function mutate(frame: Buffer, ipOff: number, m: Mutation): Buffer {
  const f = Buffer.from(frame);
  switch (m.kind) {
    case 'truncate':
      return f.subarray(0, m.at % (f.length + 1));
    case 'byte':
      if (f.length > 0) f[m.at % f.length] = m.value;
      return f;
    case 'payload-length':
      if (f.length >= ipOff + 6) f.writeUInt16BE(m.value, ipOff + 4);
      return f;
    case 'next-header':
      if (f.length > ipOff + 6) f[ipOff + 6] = m.value;
      return f;
    case 'version':
      if (f.length > ipOff) f[ipOff] = (m.value << 4) | (f[ipOff] & 0x0f);
      return f;
    case 'none':
      return f;
  }
}

const frameShape = fc.record({
  inner: innerSpec,
  ns: fc.option(fc.record({ ours: fc.boolean(), hopLimit: fc.constantFrom(255, 255, 64), bend: fc.constantFrom(0, 0, 1, 2) }), { freq: 4 }),
  vni: fc.constantFrom(1, 1, 1, 2),
  etherType: fc.constantFrom(0x86dd, 0x86dd, 0x86dd, 0x0800),
  srcMac: fc.constantFrom('peer6', 'peer6', 'peer6', 'ours6', 'ours4'),
  dstMac: fc.constantFrom('ours6', 'ours6', 'ours6', 'ours4', 'multicast', 'other'),
  mutation,
  sender: fc.constantFrom('peer', 'peer', 'peer', 'stranger'),
});
type FrameShape = typeof frameShape extends fc.Arbitrary<infer T> ? T : never;

function datagram(s: FrameShape, a: DualNode, b: DualNode): Buffer {
  const mac = (which: string): number =>
    which === 'peer6' ? a.mac6 : which === 'ours6' ? b.mac6 : which === 'ours4' ? b.mac : which === 'multicast' ? 0x3333ff000000 : 0x0200000000ee;
  const inner = s.ns !== null ? solicitation(s.ns.ours, s.ns.hopLimit, s.ns.bend) : innerPacket(s.inner);
  return mutate(vxlanFrame(inner, mac(s.srcMac), mac(s.dstMac), s.vni === 1 ? VNI : s.vni, s.etherType), 22, s.mutation);
}

/** What the runs reached, so a generator that stops reaching the deep paths fails the last test instead of passing. */
const reached = { delivered: 0, answered: 0, sent: 0, errors: 0 };

function unaccounted(c: Counters, units: number): number {
  return units - (c.tunOut.packets + c.arpReplies + c.neighborAdvertisements + c.drops.total - c.drops.get('icmp', 'rate-limited'));
}

function assertClean(node: DualNode): void {
  const c = node.engine.counters;
  assert.is(c.drops.get('engine', 'internal-error'), 0, `an exception inside the engine: ${JSON.stringify(c.drops)}`);
  assert.is(node.pool.inUse, 0, 'every slot back in the pool');
  assert.not.ok(node.engine.isStopped);
}

for (const over of [4, 6] as const) {
  for (const gro of [false, true]) {
    Fuzz6(`decapsulation over IPv${over}${gro ? ' with GRO' : ''}: random and mutated IPv6 frames are delivered, answered or counted`, () => {
      fc.assert(
        fc.property(fc.array(frameShape, { minLength: 1, maxLength: 20 }), fc.integer({ min: 1, max: 2000 }), (shapes, oddSegment) => {
          const { a, b } = dualPair(over, { gro, poolSize: gro ? 80 : 128 });
          let units = 0;
          for (const s of shapes) {
            const d = datagram(s, a, b);
            const peer = s.sender === 'peer';
            let buffer = d;
            let segment = 0;
            if (gro) {
              buffer = Buffer.concat(Array.from({ length: 1 + (oddSegment % 4) }, () => d));
              segment = oddSegment % 3 === 0 ? oddSegment : d.length;
            }
            units += segment > 0 && segment < buffer.length ? Math.ceil(buffer.length / segment) : 1;
            if (over === 6) {
              const from = peer ? a.underlayIp6 : ip6('2001:db8::66');
              if (gro) b.socket6!.injectGro(buffer, segment, from);
              else b.socket6!.inject(buffer, from);
            } else {
              const from = peer ? a.underlayIp : ip('198.51.100.66');
              if (gro) b.socket.injectGro(buffer, segment, from, 40000);
              else b.socket.inject(buffer, from, 40000);
            }
          }
          if (over === 6) b.engine.pumpInbound6();
          else b.engine.pumpInbound();
          assertClean(b);
          assert.is(b.engine.counters.underlayIn.packets, units);
          assert.is(unaccounted(b.engine.counters, units), 0, JSON.stringify(b.engine.counters));
          reached.delivered += b.engine.counters.tunOut.packets;
          reached.answered += b.engine.counters.neighborAdvertisements;
          for (const packet of b.tun.written) {
            if (packet[0] >> 4 !== 6) continue;
            assert.is(packet.readUInt32BE(8), 0xfd000010);
            assert.is(packet.readUInt32BE(12), 0x02440001, "inner source in the sender's IPv6 subnet");
            assert.is(packet.readUInt32BE(24), 0xfd000010);
            assert.is(packet.readUInt32BE(28), 0x02440002, 'inner destination in ours');
            assert.is(packet.length, 40 + packet.readUInt16BE(4), 'trimmed to its payload length');
          }
        }),
        { numRuns: gro ? Math.ceil(RUNS / 3) : RUNS },
      );
    });
  }

  Fuzz6(`TUN path over IPv${over}: random and mutated IPv6 packets are sent or counted; errors never about errors`, () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(innerSpec, mutation), { minLength: 1, maxLength: 40 }), (inputs) => {
        const { a } = dualPair(over);
        for (const [spec, m] of inputs) a.tun.inject(mutate(innerPacket(spec), 0, m));
        a.engine.pumpOutbound();
        assertClean(a);
        const c = a.engine.counters;
        assert.is(c.tunIn.packets, inputs.length);
        assert.is(c.underlayOut.packets + c.drops.total - c.drops.get('icmp', 'rate-limited'), inputs.length, JSON.stringify(c));
        reached.sent += c.underlayOut.packets;
        reached.errors += a.tun.written.length;
        for (const reply of a.tun.written) {
          // Every reply is an ICMPv6 error (1 or 2) to a unicast source, at most 1280 bytes.
          assert.is(reply[0] >> 4, 6);
          assert.ok(reply.length <= 1280);
          assert.ok(reply[40] === 1 || reply[40] === 2);
          assert.is.not(reply[24], 0xff, 'never to a multicast address');
        }
      }),
      { numRuns: RUNS },
    );
  });
}

Fuzz6('the generators reach every outcome: delivered, NA answered, sent, ICMPv6 error', () => {
  assert.ok(reached.delivered > 0 && reached.answered > 0 && reached.sent > 0 && reached.errors > 0, JSON.stringify(reached));
});

Fuzz6.run();
