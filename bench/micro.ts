// Micro-benchmarks (benny): the per-packet work of the data plane, without any I/O.
//
// The encapsulation cases call the Encapsulation objects of src/dataplane/encap/ directly, over 64 packets laid out in
// a BufferPool slab as the engine lays them out (packet at HEADROOM in each slot), with the engine's per-packet steps
// around them (inner IPv4 check and destination read, route lookup). They do not go through the in-memory fakes:
// FakeTun / FakeSocket copy every packet, which would measure the fakes rather than the data plane.
// benny's submodules, not its index: the index's declarations reference @types/benchmark, which we do not install
// (bench/benchmark.d.ts gives the two opaque types the submodules name).
import add from 'benny/lib/add';
import configure from 'benny/lib/configure';
import cycle from 'benny/lib/cycle';
import suite from 'benny/lib/suite';
import type { Summary } from 'benny/lib/internal/common-types';
import { BufferPool, HEADROOM } from '../src/buf/pool';
import { PacketBatch } from '../src/io/batch';
import { Counters } from '../src/dataplane/counters';
import { type Encapsulation, type LocalVtep, createEncapsulation } from '../src/dataplane/encap';
import { RouteTable } from '../src/dataplane/route-table';
import { RouteTable6 } from '../src/dataplane/route-table6';
import { tcpSegment6 } from '../src/dataplane/tso6';
import { tcpSegment } from '../src/io/segmentation';
import { emitIpv6 } from '../src/wire/ipv6';
import { parseCidr6, parseIPv6, writeIPv6 } from '../src/wire/address6';
import { ForwardingTables, type Route } from '../src/dataplane/tables';
import { parseCidr, parseIPv4, parseMac } from '../src/wire/address';
import { internetChecksum } from '../src/wire/checksum';
import { ETHERNET_HEADER_LEN, ETHERTYPE_IPV4, EthernetView } from '../src/wire/ethernet';
import { IPPROTO_IPIP, IPPROTO_UDP, Ipv4View, checkIpv4, writeIpv4Header } from '../src/wire/ipv4';
import { VXLAN_HEADER_LEN, writeVxlanHeader } from '../src/wire/vxlan';

export interface MicroResult {
  suite: string;
  name: string;
  opsPerSecond: number;
  /** Relative margin of error, in percent. */
  marginPercent: number;
  samples: number;
  /** Packets per operation (64 for the batch cases, else 1). */
  packetsPerOp: number;
}

export interface MicroOptions {
  /** Seconds per case (benny's maxTime); default 1. */
  maxTime?: number;
  log?: (line: string) => void;
}

const BATCH = 64;
const INNER_LEN = 1400;
const LOCAL_UNDERLAY = parseIPv4('192.0.2.11');
const REMOTE_UNDERLAY = parseIPv4('192.0.2.12');
const REMOTE_MAC = parseMac('0e:00:00:00:00:02');
const LOCAL: LocalVtep = { vtepIp: parseIPv4('10.17.1.0'), subnet: parseCidr('10.17.1.0/24'), vtepMac: parseMac('0e:00:00:00:00:01'), underlayIp: LOCAL_UNDERLAY, vni: 1, port: 4789 };

/** Keeps results alive so the optimizer cannot drop the work. */
let sink = 0;

function forwardingTables(encap: 'vxlan' | 'ipip'): ForwardingTables {
  const tables = new ForwardingTables();
  const subnet = parseCidr('10.17.2.0/24');
  const gateway = encap === 'vxlan' ? subnet.address : REMOTE_UNDERLAY;
  tables.routes.set(subnet, { subnet, gateway, encap });
  tables.neighbors.set(subnet.address, REMOTE_MAC);
  tables.fdb.set(REMOTE_MAC, REMOTE_UNDERLAY);
  tables.addVtep(REMOTE_UNDERLAY, subnet);
  return tables;
}

/** 64 inner IPv4/UDP packets of 1400 bytes to 10.17.2.x, each at HEADROOM in its own pool slot. */
function innerBatch(pool: BufferPool): PacketBatch {
  const batch = new PacketBatch(pool.slab, BATCH);
  for (let i = 0; i < BATCH; i++) {
    const off = pool.start(pool.get()) + HEADROOM;
    writeIpv4Header(pool.slab, off, parseIPv4('10.17.1.5'), parseIPv4(`10.17.2.${1 + (i % 200)}`), IPPROTO_UDP, INNER_LEN - 20);
    batch.push(off, INNER_LEN);
  }
  return batch;
}

/** The engine's outbound steps for one batch: check, read destination, route, encapsulate. */
function encapsulateBatch(encap: Encapsulation, batch: PacketBatch, tables: ForwardingTables, out: PacketBatch, counters: Counters, ip: Ipv4View): void {
  out.count = 0;
  const slab = batch.slab;
  for (let i = 0; i < batch.count; i++) {
    const off = batch.offsets[i]!;
    const len = batch.lengths[i]!;
    if (checkIpv4(slab, off, len) !== undefined) continue;
    const route: Route | undefined = tables.routes.lookup(ip.wrap(slab, off).destination);
    if (route === undefined) continue;
    encap.encapsulate(slab, off, len, route, tables, out, counters);
  }
}

/** Received datagrams as the socket hands them over: VXLAN payloads (UDP stripped) or whole IP-in-IP packets. */
function receivedBatch(name: 'vxlan' | 'ipip', pool: BufferPool): PacketBatch {
  const inner = innerBatch(pool);
  const received = new PacketBatch(pool.slab, BATCH);
  const eth = new EthernetView();
  for (let i = 0; i < inner.count; i++) {
    const off = inner.offsets[i]!;
    if (name === 'vxlan') {
      const start = off - VXLAN_HEADER_LEN - ETHERNET_HEADER_LEN;
      writeVxlanHeader(pool.slab, start, LOCAL.vni);
      const frame = eth.wrap(pool.slab, start + VXLAN_HEADER_LEN);
      frame.destination = LOCAL.vtepMac;
      frame.source = REMOTE_MAC;
      frame.etherType = ETHERTYPE_IPV4;
      received.push(start, inner.lengths[i]! + VXLAN_HEADER_LEN + ETHERNET_HEADER_LEN, REMOTE_UNDERLAY, LOCAL.port);
    } else {
      const start = off - 20;
      writeIpv4Header(pool.slab, start, REMOTE_UNDERLAY, LOCAL_UNDERLAY, IPPROTO_IPIP, inner.lengths[i]!);
      received.push(start, inner.lengths[i]! + 20, REMOTE_UNDERLAY, 0);
    }
  }
  return received;
}

function encapCase(name: 'vxlan' | 'ipip'): () => void {
  const pool = new BufferPool(BATCH * 2);
  const batch = innerBatch(pool);
  const tables = forwardingTables(name);
  const encap = createEncapsulation(name, LOCAL);
  const out = new PacketBatch(pool.slab, BATCH);
  const counters = new Counters(BATCH);
  const ip = new Ipv4View();
  encapsulateBatch(encap, batch, tables, out, counters, ip);
  if (out.count !== BATCH) throw new Error(`${name} encapsulated ${out.count} of ${BATCH} packets: ${JSON.stringify(counters.drops)}`);
  return () => {
    encapsulateBatch(encap, batch, tables, out, counters, ip);
    sink += out.count;
  };
}

function decapCase(name: 'vxlan' | 'ipip'): () => void {
  const pool = new BufferPool(BATCH * 2);
  const received = receivedBatch(name, pool);
  const tables = forwardingTables(name);
  const encap = createEncapsulation(name, LOCAL);
  const replies = new PacketBatch(pool.slab, BATCH);
  const counters = new Counters(BATCH);
  const decapsulateBatch = (): number => {
    let delivered = 0;
    for (let i = 0; i < received.count; i++) {
      if (encap.decapsulate(received.slab, received.offsets[i]!, received.lengths[i]!, received.addrs[i]!, tables, replies, counters) >= 0) delivered++;
    }
    return delivered;
  };
  const first = decapsulateBatch();
  if (first !== BATCH) throw new Error(`${name} decapsulated ${first} of ${BATCH} packets: ${JSON.stringify(counters.drops)}`);
  return () => {
    sink += decapsulateBatch();
  };
}

function routeLookupCase(routes: number): () => void {
  const table = new RouteTable<number>();
  // /24 leases as flannel hands them out in a /8, plus a default-ish /16 so the lookup probes two lengths.
  for (let i = 0; i < routes; i++) table.set({ address: (parseIPv4('10.0.0.0') + i * 256) >>> 0, prefixLength: 24 }, i);
  table.set(parseCidr('10.200.0.0/16'), -1);
  const probes = new Uint32Array(1024);
  for (let i = 0; i < probes.length; i++) probes[i] = (parseIPv4('10.0.0.0') + ((i * 7919) % routes) * 256 + 5) >>> 0;
  let next = 0;
  return () => {
    sink += table.lookup(probes[next++ & 1023]!) ?? 0;
  };
}

/**
 * IPv6 routes (issue 12): /64 leases in a /48 as flannel hands them out from IPv6Network, plus a /56 so the lookup
 * probes two lengths as the IPv4 case does; the destination read from packet bytes (lookupAt), as the engine reads it.
 */
function routeLookup6Case(routes: number): () => void {
  const table = new RouteTable6<number>();
  const base = parseIPv6('fd00:10::');
  for (let i = 0; i < routes; i++) table.set({ address: base + (BigInt(i) << 64n), prefixLength: 64 }, i);
  table.set(parseCidr6('fd00:10:0:ff00::/56'), -1);
  const probes = Buffer.alloc(1024 * 16);
  for (let i = 0; i < 1024; i++) writeIPv6(probes, 16 * i, base + (BigInt((i * 7919) % routes) << 64n) + 5n);
  let next = 0;
  return () => {
    sink += table.lookupAt(probes, 16 * (next++ & 1023)) ?? 0;
  };
}

/**
 * Cutting a 64,000-byte TCP super-packet into 1,388-byte segments behind a 22-byte VXLAN template: TCP/IPv4 with the
 * native tcpSegment (native/offload.cc) and TCP/IPv6 with tcpSegment6 (TypeScript copies, native completeChecksum; src/dataplane/tso6.ts), side by side.
 */
function segmentCase(family: 4 | 6): () => void {
  const payload = 64_000;
  const pkt = Buffer.alloc(65_535);
  const headerLen = family === 4 ? 20 : 40;
  const pktLen = headerLen + 20 + payload;
  if (family === 4) writeIpv4Header(pkt, 0, parseIPv4('10.17.1.5'), parseIPv4('10.17.2.9'), 6, 20 + payload);
  else emitIpv6({ source: parseIPv6('fd00:10:244:1::5'), destination: parseIPv6('fd00:10:244:2::9'), nextHeader: 6, payloadLength: 20 + payload, hopLimit: 64 }, pkt, 0);
  pkt[headerLen + 12] = 0x50;
  pkt[headerLen + 13] = 0x18;
  const out = Buffer.alloc(65_535 + 128 * 142);
  const prefix = Buffer.alloc(64);
  const lengths = new Uint32Array(128);
  return () => {
    const n = family === 4
      ? tcpSegment(pkt, 0, pktLen, headerLen + 20, 1388, headerLen, out, 0, prefix, 0, 22, lengths)
      : tcpSegment6(pkt, 0, pktLen, 1388, headerLen, out, 0, prefix, 22, lengths);
    if (n !== 47) throw new Error(`segmentation failed: ${n}`);
    sink += n;
  };
}

/** benny announces each suite with console.log; the runner prints its own table, so silence it. */
async function quietly<T>(work: () => Promise<T>): Promise<T> {
  const log = console.log;
  console.log = () => undefined;
  try {
    return await work();
  } finally {
    console.log = log;
  }
}

function toResults(suite: string, summary: Summary, packetsPerOp: (name: string) => number): MicroResult[] {
  return summary.results.map((result) => ({
    suite,
    name: result.name,
    opsPerSecond: result.ops,
    marginPercent: result.margin,
    samples: result.samples,
    packetsPerOp: packetsPerOp(result.name),
  }));
}

export async function runMicro(options: MicroOptions = {}): Promise<MicroResult[]> {
  const cases = { maxTime: options.maxTime ?? 1, minSamples: 5 };
  const results: MicroResult[] = [];
  const logCycle = cycle((result) => {
    options.log?.(`  ${result.name}: ${Math.round(result.ops).toLocaleString('en-US')} ops/s ±${result.margin}%`);
    return ''; // benny prints what cycle returns; we log ourselves
  });

  // Wire: one 1400-byte IPv4 packet and one VXLAN + Ethernet header in place.
  const wireBuf = Buffer.alloc(2048);
  writeIpv4Header(wireBuf, HEADROOM, parseIPv4('10.17.1.5'), parseIPv4('10.17.2.9'), IPPROTO_UDP, INNER_LEN - 20);
  const ip = new Ipv4View();
  const eth = new EthernetView();
  options.log?.('micro: wire');
  results.push(...toResults('wire', await quietly(() => suite('wire',
    add('ipv4 check + view reads', () => {
      if (checkIpv4(wireBuf, HEADROOM, INNER_LEN) !== undefined) throw new Error('bad fixture');
      const view = ip.wrap(wireBuf, HEADROOM);
      sink += view.destination + view.source + view.protocol + view.ttl + view.totalLength;
    }),
    add('vxlan header + inner ethernet write', () => {
      writeVxlanHeader(wireBuf, HEADROOM - 22, 1);
      const frame = eth.wrap(wireBuf, HEADROOM - 14);
      frame.destination = REMOTE_MAC;
      frame.source = LOCAL.vtepMac;
      frame.etherType = ETHERTYPE_IPV4;
    }),
    add('internet checksum 1400 B', () => {
      sink += internetChecksum(wireBuf, HEADROOM, HEADROOM + INNER_LEN);
    }),
    configure({ cases }), logCycle,
  )), () => 1));

  options.log?.(`micro: encapsulation (batch of ${BATCH} x ${INNER_LEN} B, Encapsulation objects directly)`);
  results.push(...toResults('encap', await quietly(() => suite('encap',
    add(`vxlan encapsulate x${BATCH}`, encapCase('vxlan')),
    add(`vxlan decapsulate x${BATCH}`, decapCase('vxlan')),
    add(`ipip encapsulate x${BATCH}`, encapCase('ipip')),
    add(`ipip decapsulate x${BATCH}`, decapCase('ipip')),
    configure({ cases }), logCycle,
  )), () => BATCH));

  options.log?.('micro: tables and pool');
  const pool = new BufferPool(1024);
  results.push(...toResults('tables', await quietly(() => suite('tables',
    add('route lookup, 10 routes', routeLookupCase(10)),
    add('route lookup, 10,000 routes', routeLookupCase(10_000)),
    add('route6 lookup, 10 routes', routeLookup6Case(10)),
    add('route6 lookup, 10,000 routes', routeLookup6Case(10_000)),
    add('pool get + put', () => {
      const slot = pool.get();
      pool.put(slot);
      sink += slot;
    }),
    configure({ cases }), logCycle,
  )), () => 1));

  options.log?.('micro: TSO segmentation (one 64,000-byte super-packet into 47 segments)');
  results.push(...toResults('tso', await quietly(() => suite('tso',
    add('tso4 native tcpSegment 64 KB', segmentCase(4)),
    add('tso6 tcpSegment6 (TS copies, native checksum) 64 KB', segmentCase(6)),
    configure({ cases }), logCycle,
  )), () => 47));

  if (sink === Number.MIN_SAFE_INTEGER) options.log?.('unreachable'); // reads sink once
  return results;
}
