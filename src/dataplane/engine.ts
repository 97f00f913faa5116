// The engine: two loops over one buffer pool.
//   outbound  TUN read batch -> check inner IPv4 -> route (LPM) -> [MTU / ICMP] -> encapsulate in place -> socket send batch
//   inbound   socket recv batch -> sender holds a lease? -> decapsulate (checks, ARP) -> check inner IPv4
//             -> inner source in the sender's lease, destination in ours (admission.ts) -> TUN write batch
// IPv6 (issue 12), when our lease has an IPv6 subnet: packets with version nibble 6 take the same loops through
// ipv6-path.ts (routes6 -> neighbors6 -> fdb6 or fdb, Packet Too Big / Destination Unreachable back into the TUN,
// admission by the sender's IPv6 subnets); an IPv6 underlay socket (socket6) gets its own receive loop and send batch.
// Every decision is made here in TypeScript, every drop is counted by stage and reason, and nothing on these paths
// allocates: batches, views and slots are made once. Each readiness callback runs a bounded number of rounds and
// returns to the event loop, so inbound, outbound and the control plane take turns. A round never throws: system
// call errors are counted (transient) or stop the engine through onFatal (the device is gone), see io-faults.ts,
// and every slot a round took goes back to the pool whatever happens.
import { HEADROOM, type BufferPool } from '../buf/pool';
import { PacketBatch } from '../io/batch';
import type { DatagramSocket, GsoSendResult, TunDevice } from '../io/types';
import type { Cidr } from '../wire/address';
import type { Cidr6 } from '../wire/address6';
import { ICMP_FRAG_NEEDED, ICMP_NET_UNREACHABLE, emitIcmpUnreachable, icmpErrorAllowed } from '../wire/icmp';
import { Ipv4View, checkIpv4 } from '../wire/ipv4';
import { completeChecksum } from '../io/segmentation';
import { MAX_VIRTIO_NET_PACKET_LEN, VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_LEN, VirtioNetHeaderView } from '../wire/virtio-net';
import { InnerAdmission } from './admission';
import { Ipv6Path, IPV6_UNDERLAY_EXTRA } from './ipv6-path';
import { VIRTIO_NET_HDR_GSO_TCPV6, tcpSegment6 } from './tso6';
import type { LeasedVtep } from './vtep-registry';
import { ICMPV6_DEST_UNREACHABLE, ICMPV6_NO_ROUTE, ICMPV6_PACKET_TOO_BIG, emitIcmpv6Error, icmpv6ErrorAllowed } from '../wire/icmpv6';
import { IPV6_DESTINATION_OFFSET, IPV6_HEADER_LEN } from '../wire/ipv6';
import { Counters } from './counters';
import type { Encapsulation, LocalVtep } from './encap';
import { BATCH6_INDEX, JourneyBuilder, type PacketTracer, type PendingJourney } from './journeys';
import { type DataPlaneLog, silentLog } from './log';
import { SegmentSender } from './segment-sender';
import { SourcePorts } from './source-ports';
import { type IoDoor, IoFaults } from './io-faults';
import { ForwardingTables } from './tables';

export const DEFAULT_BATCH_SIZE = 64;
/** Bytes a pool slot needs after HEADROOM when the TUN hands over 64 KB TCP super-packets (offload). */
export const OFFLOAD_SLOT_BYTES = MAX_VIRTIO_NET_PACKET_LEN;
/**
 * Inner packets queued for the TUN per received buffer before the queue is written out. A UDP GRO receive may hold
 * up to 128 datagrams on recent kernels (UDP_MAX_SEGMENTS, include/linux/udp.h) and a batch 64 buffers; a full queue
 * is written out and refilled (receiveOne), so this sizes the write batches, it is not a limit.
 */
const GRO_SEGMENTS = 64;
/** Batches per readiness callback before yielding to the event loop. */
const ROUNDS_PER_WAKEUP = 16;
/** One UDP GSO call of TSO6 segments: the kernel's UDP_MAX_SEGMENTS (64 on older kernels) and one UDP datagram. */
const TSO6_GSO_SEGMENTS = 64;
const TSO6_GSO_BYTES = 65507;
/** A busy-poll spins at most this long per wake-up, so timers and the control plane still get their turn. */
const BUSY_POLL_MAX_MS = 2;
/** ICMP errors per second we generate at most (the kernel rate-limits its own likewise). */
const ICMP_ERRORS_PER_SECOND = 100;

export interface EngineOptions {
  tun: TunDevice;
  socket: DatagramSocket;
  /** Sockets to send from, one picked per inner flow for source-port entropy (default: just `socket`). */
  senders?: DatagramSocket[];
  encap: Encapsulation;
  pool: BufferPool;
  local: LocalVtep;
  /** Largest inner packet the overlay carries (underlay MTU minus the encapsulation overhead). */
  overlayMtu: number;
  /** The cluster network: its address is the source of our ICMP net-unreachable (never a local address: the kernel
   *  drops packets from its own addresses arriving on a device). */
  network: Cidr;
  /** The cluster IPv6 network (flannel's IPv6Network): its address is the source of the ICMPv6 errors we generate. */
  network6?: Cidr6;
  /**
   * An IPv6 underlay socket (family 6, from v6-underlay's udp.ts): IPv6 and IPv4 inner packets whose FDB entry is in
   * fdb6 leave through it, and datagrams it receives are checked against VTEPs with an IPv6 PublicIPv6.
   */
  socket6?: DatagramSocket;
  batchSize?: number;
  tables?: ForwardingTables;
  /** Where the engine says what went wrong (each kind of I/O fault once); the agent passes its Logger. */
  log?: DataPlaneLog;
  /**
   * The data plane can no longer serve (our TUN was deleted, the underlay socket broke): the engine has stopped and
   * calls this once, from the event loop, with an error whose message says what happened. Default: log it.
   */
  onFatal?: (error: Error) => void;
  /** Super-packets go whole to sockets that segment natively (raw IP-in-IP: sendSegments); default true. */
  nativeSegments?: boolean;
  /**
   * Busy-poll window in microseconds (default 0: off). After a wake-up the engine keeps polling the TUN and the
   * sockets until this long has passed without a packet (at most BUSY_POLL_MAX_MS per wake-up), so that a reply
   * arriving soon after a request is taken without the scheduler's wake-up latency. It spends a core while it spins.
   */
  busyPollUs?: number;
}

export class Engine {
  tables: ForwardingTables;
  readonly counters: Counters;
  /** Set while someone traces; when undefined (the normal case) tracing costs one comparison per packet. */
  tracer: PacketTracer | undefined = undefined;
  private readonly tun: TunDevice;
  private readonly socket: DatagramSocket;
  /** The IPv6 underlay socket, when there is one. */
  private readonly socket6: DatagramSocket | undefined;
  /** IPv6 decisions, when our lease has an IPv6 subnet (else IPv6 is dropped as 'ipv6-not-supported'). */
  private readonly v6: Ipv6Path | undefined;
  /** Largest inner packet over the IPv6 underlay (its outer header is 20 bytes longer). */
  private readonly overlayMtu6: number;
  private readonly encap: Encapsulation;
  private readonly pool: BufferPool;
  private readonly slab: Buffer;
  private readonly overlayMtu: number;
  private readonly network: Cidr;
  private readonly batchSize: number;
  private readonly ip = new Ipv4View();

  // Outbound state: slots read from the TUN, datagrams to send, ICMP errors to write back into the TUN.
  private readonly outRead: PacketBatch;
  private readonly outSlots: Uint32Array;
  private readonly outSend: PacketBatch;
  /** Per outSend entry: the sender its flow hashed to, and whether the kernel took it. */
  private readonly outSender: Uint8Array;
  private readonly outSent: Uint8Array;
  private readonly sourcePorts: SourcePorts;
  private readonly icmpReplies: PacketBatch;
  private readonly icmpSlots: Uint32Array;
  // Inbound state: datagrams received, inner packets for the TUN, ARP replies for the underlay.
  private readonly inRecv: PacketBatch;
  private readonly inSlots: Uint32Array;
  private inToTun: PacketBatch;
  private readonly arpReplies: PacketBatch;
  // IPv6 underlay state: datagrams to send, received, and Neighbor Advertisements for it.
  private readonly outSend6: PacketBatch;
  private readonly inRecv6: PacketBatch;
  private readonly inSlots6: Uint32Array;
  private readonly ndReplies6: PacketBatch;
  /** Offload (TSO/GSO/GRO) state: used only when the TUN or the socket offers it. */
  private readonly offload: boolean;
  private readonly vnet = new VirtioNetHeaderView();
  private readonly segments: SegmentSender;
  private readonly segSizes: Uint32Array;
  private readonly coalesceScratch: Buffer;
  /** TSO6 segmentation buffers (made on the first super-packet: only offload TUNs with an IPv6 lease need them). */
  private tso6: { out: Buffer; prefix: Buffer; lengths: Uint32Array; batch: PacketBatch } | undefined;

  private readonly journeys: JourneyBuilder;
  private readonly pendingJourneys: PendingJourney[] = [];
  private icmpTokens = ICMP_ERRORS_PER_SECOND;
  private icmpRefilledAt = 0;
  private running = false;
  /** Set by stop() or a fatal fault: the loops do nothing more. */
  private stopped = false;
  /** Bytes a read may fill after HEADROOM: a longer packet did not fit its slot. */
  private readonly slotCapacity: number;
  private readonly admission: InnerAdmission;
  private readonly faults: IoFaults;
  private readonly local: LocalVtep;
  private readonly log: DataPlaneLog;
  private readonly onFatal: ((error: Error) => void) | undefined;
  private readonly busyPollUs: number;

  constructor(options: EngineOptions) {
    this.tun = options.tun;
    this.socket = options.socket;
    this.socket6 = options.socket6;
    this.encap = options.encap;
    this.pool = options.pool;
    this.slab = options.pool.slab;
    this.overlayMtu = options.overlayMtu;
    this.network = options.network;
    this.batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
    this.tables = options.tables ?? new ForwardingTables();
    this.counters = new Counters(this.batchSize);
    this.offload = this.tun.offload;
    const needed = this.offload || this.socket.gro || options.socket6?.gro ? OFFLOAD_SLOT_BYTES : options.overlayMtu + this.encap.headroom;
    if (this.pool.slotSize - HEADROOM < needed) {
      throw new Error(`buffer pool slots of ${this.pool.slotSize} bytes cannot hold ${needed}-byte reads`);
    }
    const b = this.batchSize;
    this.outRead = new PacketBatch(this.slab, b);
    this.outSlots = new Uint32Array(b);
    this.outSend = new PacketBatch(this.slab, b);
    this.outSender = new Uint8Array(b);
    this.outSent = new Uint8Array(b);
    this.sourcePorts = new SourcePorts(options.senders ?? [this.socket], this.slab, b);
    this.icmpReplies = new PacketBatch(this.slab, b);
    this.icmpSlots = new Uint32Array(b);
    this.inRecv = new PacketBatch(this.slab, b);
    this.inSlots = new Uint32Array(b);
    this.inToTun = new PacketBatch(this.slab, this.socket.gro ? b * GRO_SEGMENTS : b);
    this.arpReplies = new PacketBatch(this.slab, this.socket.gro ? b * GRO_SEGMENTS : b);
    this.segments = new SegmentSender(this.encap, this.counters, this.sourcePorts.senders[0].sendGso !== undefined, { log: options.log, nativeSegments: options.nativeSegments }, (socket, lost) =>
      this.faults.sendShortfall(socket, lost),
    );
    this.segSizes = new Uint32Array(b);
    this.coalesceScratch = this.offload ? Buffer.alloc(OFFLOAD_SLOT_BYTES) : Buffer.alloc(0);
    this.journeys = new JourneyBuilder(this.encap.name, options.local, this.tun.name, this.counters.drops);
    this.slotCapacity = this.pool.slotSize - HEADROOM;
    this.admission = new InnerAdmission(options.local.subnet);
    const { subnet6, vtepMac6 } = options.local;
    this.v6 = subnet6 !== undefined && this.encap.writeHeaders6 !== undefined ? new Ipv6Path(subnet6, vtepMac6 ?? options.local.vtepMac, options.network6, this.counters) : undefined;
    this.overlayMtu6 = options.overlayMtu - IPV6_UNDERLAY_EXTRA;
    const gro6 = this.socket6?.gro === true;
    this.outSend6 = new PacketBatch(this.slab, b);
    this.inRecv6 = new PacketBatch(this.slab, b);
    this.inSlots6 = new Uint32Array(b);
    this.ndReplies6 = new PacketBatch(this.slab, gro6 ? b * GRO_SEGMENTS : b);
    if (gro6 && !this.socket.gro) this.inToTun = new PacketBatch(this.slab, b * GRO_SEGMENTS);
    this.log = options.log ?? silentLog;
    this.onFatal = options.onFatal;
    this.busyPollUs = options.busyPollUs ?? 0;
    this.local = options.local;
    this.faults = new IoFaults(this.counters.drops, this.log, this.tun.name, this.socket.kind === 'udp' ? 'UDP socket' : 'raw IP-in-IP socket');
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.tun.watch(() => {
      this.pumpOutbound();
      this.busyPoll();
    });
    this.socket.watch(() => {
      this.pumpInbound();
      this.busyPoll();
    });
    this.socket6?.watch(() => {
      this.pumpInbound6();
      this.busyPoll();
    });
  }

  /**
   * The optional busy-poll window (EngineOptions.busyPollUs): rounds in both directions, without waiting for
   * readiness, until `busyPollUs` pass with nothing to move or BUSY_POLL_MAX_MS in all; then back to the event loop.
   */
  private busyPoll(): void {
    const windowMs = this.busyPollUs / 1000;
    if (windowMs === 0) return;
    const started = performance.now();
    let lastPacket = started;
    for (;;) {
      if (this.stopped) return;
      const moved = this.outboundRound() + this.inboundRound() + (this.socket6 !== undefined ? this.inboundRound6() : 0);
      const now = performance.now();
      if (moved > 0) {
        lastPacket = now;
        this.counters.busyPollHits++;
      }
      if (now - lastPacket > windowMs || now - started > BUSY_POLL_MAX_MS) return;
    }
  }

  stop(): void {
    this.running = false;
    this.stopped = true;
    this.tun.close();
    this.socket.close();
    this.socket6?.close();
    for (const sender of this.sourcePorts.senders) sender.close();
  }

  /** Moves packets TUN -> underlay until the TUN is empty or this wake-up's share is used. Never throws. */
  pumpOutbound(): void {
    for (let round = 0; round < ROUNDS_PER_WAKEUP; round++) {
      if (this.stopped || this.outboundRound() < this.batchSize) return;
    }
  }

  /** Moves datagrams underlay -> TUN until the socket is empty or this wake-up's share is used. Never throws. */
  pumpInbound(): void {
    for (let round = 0; round < ROUNDS_PER_WAKEUP; round++) {
      if (this.stopped || this.inboundRound() < this.batchSize) return;
    }
  }

  /** Moves datagrams from the IPv6 underlay socket to the TUN, as pumpInbound. Never throws. */
  pumpInbound6(): void {
    for (let round = 0; round < ROUNDS_PER_WAKEUP; round++) {
      if (this.stopped || this.inboundRound6() < this.batchSize) return;
    }
  }

  /** Stopped, by stop() or by a fatal fault. */
  get isStopped(): boolean {
    return this.stopped;
  }

  private outboundRound(): number {
    const read = this.outRead;
    const prepared = this.prepare(read, this.outSlots);
    if (prepared === 0) return 0;
    try {
      const n = this.readTun(read);
      if (n === 0) return 0;
      this.counters.outboundBatches.record(n);
      this.outSend.count = 0;
      const tracer = this.tracer;
      const capacity = this.slotCapacity;
      for (let i = 0; i < n; i++) {
        const off = read.offsets[i];
        const len = read.lengths[i];
        if (len > capacity) this.dropTooLong(len);
        else if (this.offload) this.forwardOffloaded(off, len, tracer);
        else if (tracer === undefined) this.forward(off, len);
        else this.forwardTraced(off, len, tracer);
      }
      this.flushOutbound(tracer);
      this.flushIcmpReplies();
      return n;
    } catch (error) {
      // Only what the I/O helpers do not catch gets here: a segment sender's send, or a bug.
      this.roundFailed(error, 'underlay-send');
      return 0;
    } finally {
      this.outSend.count = 0;
      this.outSend6.count = 0;
      this.releaseIcmpReplies();
      this.release(this.outSlots, prepared);
    }
  }

  /**
   * The TUN handed over a packet longer than its slot (someone raised the TUN MTU by hand: only what fit was stored
   * and the length says so, see TunDevice.read): drop it rather than send a cut packet or bytes of the next slot.
   */
  private dropTooLong(len: number): void {
    this.counters.tunIn.add(len);
    this.counters.drops.count('tun', 'too-long');
  }

  /** One packet from the TUN: check it, route it, encapsulate it onto outSend. */
  private forward(off: number, len: number): void {
    const counters = this.counters;
    if (this.v6 !== undefined && len > 0 && this.slab[off] >> 4 === 6) {
      this.forward6(off, len);
      return;
    }
    counters.tunIn.add(len);
    const problem = checkIpv4(this.slab, off, len);
    if (problem !== undefined) {
      // The overlay is IPv4, as flannel's vxlan backend without EnableIPv6; say so rather than "bad version".
      const ipv6 = len > 0 && this.slab[off] >> 4 === 6;
      counters.drops.count('tun-ipv4', ipv6 ? 'ipv6-not-supported' : problem);
      return;
    }
    const ip = this.ip.wrap(this.slab, off);
    const route = this.tables.routes.lookup(ip.destination);
    if (route === undefined) {
      this.icmpUnreachable(ICMP_NET_UNREACHABLE, this.network.address, off, len, 0);
      counters.drops.count('route', 'no-match');
      return;
    }
    const packetLen = ip.totalLength;
    if (packetLen > this.overlayMtu && ip.dontFragment) {
      this.icmpUnreachable(ICMP_FRAG_NEEDED, route.subnet.address, off, len, this.overlayMtu);
      counters.drops.count('mtu', 'too-big');
      return;
    }
    const send = this.outSend;
    if (this.encap.encapsulate(this.slab, off, packetLen, route, this.tables, send, counters)) {
      this.outSender[send.count - 1] = this.sourcePorts.pick(this.slab, off);
    }
  }

  /** One IPv6 packet from the TUN: check it, route it (routes6), resolve its underlay, encapsulate it. */
  private forward6(off: number, len: number): void {
    const counters = this.counters;
    const v6 = this.v6!;
    const slab = this.slab;
    counters.tunIn.add(len);
    if (!v6.checkOutbound(slab, off, len)) return;
    if (slab[off + IPV6_DESTINATION_OFFSET] === 0xff) {
      // The overlay carries no multicast (flannel's neither); the kernel sends router solicitations and MLD reports.
      counters.drops.count('tun-ipv6', 'multicast');
      return;
    }
    const route = this.tables.routes6.lookupAt(slab, off + IPV6_DESTINATION_OFFSET);
    if (route === undefined) {
      this.icmpv6Error(ICMPV6_DEST_UNREACHABLE, ICMPV6_NO_ROUTE, 0, v6.networkBytes, off, len);
      counters.drops.count('route6', 'no-match');
      return;
    }
    if (route.encap !== this.encap.name) {
      counters.drops.count('route6', 'wrong-encap');
      return;
    }
    if (!v6.resolve(route, this.tables)) return;
    const packetLen = IPV6_HEADER_LEN + slab.readUInt16BE(off + 4);
    const mtu = v6.overIpv6 ? this.overlayMtu6 : this.overlayMtu;
    if (packetLen > mtu) {
      // IPv6 routers never fragment (RFC 8200 5): always Packet Too Big, whatever the packet says.
      this.icmpv6Error(ICMPV6_PACKET_TOO_BIG, 0, mtu, v6.gatewayOf(route), off, len);
      counters.drops.count('mtu', 'too-big');
      return;
    }
    const headroom = this.encap.headroom;
    const start = off - headroom;
    this.encap.writeHeaders6!(slab, start, v6.mac);
    if (!v6.overIpv6) {
      const send = this.outSend;
      if (!send.push(start, packetLen + headroom, v6.underlay4, this.encap.nextHopPort || this.localPort)) {
        counters.drops.count('underlay', 'batch-full');
        return;
      }
      this.outSender[send.count - 1] = this.sourcePorts.pick6(slab, off);
      return;
    }
    const send6 = this.outSend6;
    if (this.socket6 === undefined) {
      counters.drops.count('underlay6', 'no-socket');
      return;
    }
    if (!send6.push(start, packetLen + headroom, 0, this.localPort)) {
      counters.drops.count('underlay6', 'batch-full');
      return;
    }
    send6.addrs6.set(v6.underlay6, 4 * (send6.count - 1));
  }

  private get segments6(): { out: Buffer; prefix: Buffer; lengths: Uint32Array; batch: PacketBatch } {
    if (this.tso6 === undefined) {
      // A 64 KB payload plus 128 copies of the largest headers (VXLAN 8 + Ethernet 14 + IPv6 40 + TCP 60).
      const out = Buffer.alloc(65535 + 128 * 122);
      this.tso6 = { out, prefix: Buffer.alloc(64), lengths: new Uint32Array(128), batch: new PacketBatch(out, 128) };
    }
    return this.tso6;
  }

  private get localPort(): number {
    return this.local.port;
  }

  private inboundRound(): number {
    const recv = this.inRecv;
    const prepared = this.prepare(recv, this.inSlots);
    if (prepared === 0) return 0;
    try {
      const gro = this.socket.gro === true;
      const n = this.recvUnderlay(recv, gro);
      if (n === 0) return 0;
      this.counters.inboundBatches.record(n);
      this.inToTun.count = 0;
      this.arpReplies.count = 0;
      const tracer = this.tracer;
      const capacity = this.slotCapacity;
      for (let i = 0; i < n; i++) {
        const off = recv.offsets[i];
        const len = Math.min(recv.lengths[i], capacity);
        const segment = gro ? this.segSizes[i] : 0;
        const source = recv.addrs[i];
        const sender = this.tables.vtepOf(source);
        if (segment === 0) {
          this.receiveOne(off, len, sender, source, tracer);
          continue;
        }
        // UDP GRO: one buffer, several datagrams of one sender, each `segment` bytes but the last.
        for (let at = off, end = off + len; at < end; at += segment) this.receiveOne(at, Math.min(segment, end - at), sender, source, tracer);
      }
      this.flushInbound(tracer);
      this.flushArpReplies();
      return n;
    } catch (error) {
      this.roundFailed(error, 'underlay-recv');
      return 0;
    } finally {
      this.inToTun.count = 0;
      this.arpReplies.count = 0;
      this.release(this.inSlots, prepared);
    }
  }

  // ---- the system calls of the loops, each failure counted or fatal (io-faults.ts), never thrown --------------

  private readTun(batch: PacketBatch): number {
    try {
      return this.tun.read(batch);
    } catch (error) {
      this.ioFailed(error, 'tun-read', 0);
      return 0;
    }
  }

  private recvUnderlay(batch: PacketBatch, gro: boolean): number {
    try {
      return gro ? this.socket.recvGro!(batch, this.segSizes) : this.socket.recv(batch);
    } catch (error) {
      this.ioFailed(error, 'underlay-recv', 0);
      return 0;
    }
  }

  /** Counts a failed call that cost `lost` packets, or stops the engine when the device is unusable. */
  private ioFailed(error: unknown, door: IoDoor, lost: number): void {
    if (this.faults.handle(error, door, lost) === 'fatal') this.fail(this.faults.fatalError(error, door));
  }

  /** Something a round did not expect threw: count it; its slots are returned by the round's finally. */
  private roundFailed(error: unknown, door: IoDoor): void {
    this.pendingJourneys.length = 0;
    this.ioFailed(error, door, 1);
  }

  /** Stops the loops now; closes the devices and calls onFatal once, on the next turn of the event loop. */
  private fail(error: Error): void {
    if (this.stopped) return;
    this.stopped = true;
    this.running = false;
    setImmediate(() => {
      this.stop();
      if (this.onFatal !== undefined) this.onFatal(error);
      else this.log.error(error.message);
    });
  }

  private forwardTraced(off: number, len: number, tracer: PacketTracer): void {
    if (!tracer.wants(this.slab, off, len)) {
      this.forward(off, len);
      return;
    }
    const sentBefore = this.outSend.count;
    const sent6Before = this.outSend6.count;
    const icmpBefore = this.icmpReplies.count;
    const ipv6 = this.v6 !== undefined && len > 0 && this.slab[off] >> 4 === 6;
    this.forward(off, len);
    const icmpSent = this.icmpReplies.count > icmpBefore;
    this.pendingJourneys.push(
      ipv6
        ? this.journeys.outbound6(this.slab, off, len, this.tables, this.outSend, sentBefore, this.outSend6, sent6Before, icmpSent, tracer.withBytes)
        : this.journeys.outbound(this.slab, off, len, this.tables, this.outSend, sentBefore, icmpSent, tracer.withBytes),
    );
  }

  /** Sends what this round queued so far (before a super-packet, so that its segments do not overtake them). */
  private flushOutbound(tracer: PacketTracer | undefined): void {
    const send = this.outSend;
    if (send.count > 0) {
      let sent = 0;
      try {
        sent = this.sourcePorts.send(send, this.outSender, this.outSent);
      } catch (error) {
        this.outSent.fill(0, 0, send.count);
        this.ioFailed(error, 'underlay-send', send.count);
        sent = send.count; // counted by ioFailed
      }
      const flow = this.counters.underlayOut;
      for (let i = 0; i < send.count; i++) if (this.outSent[i] === 1) flow.add(send.lengths[i]);
      if (sent < send.count) this.faults.sendShortfall(this.socket, send.count - sent);
    }
    const send6 = this.outSend6;
    let sent6 = 0;
    if (send6.count > 0) sent6 = this.sendBatch(this.socket6!, send6);
    if (tracer !== undefined) {
      this.journeys.finish(this.pendingJourneys, (i) => (i < BATCH6_INDEX ? this.outSent[i] === 1 : i - BATCH6_INDEX < sent6), send.count, this.socketLabel, tracer, send6.count);
    }
    send.count = 0;
    send6.count = 0;
  }

  /** A read from an offload TUN: a virtio_net_hdr, then a plain packet or a TCP super-packet. */
  private forwardOffloaded(off: number, len: number, tracer: PacketTracer | undefined): void {
    if (len < VIRTIO_NET_HDR_LEN) {
      this.counters.drops.count('tun', 'truncated');
      return;
    }
    const vnet = this.vnet.wrap(this.slab, off);
    const pkt = off + VIRTIO_NET_HDR_LEN;
    const pktLen = len - VIRTIO_NET_HDR_LEN;
    const gsoType = vnet.gsoType;
    if (gsoType === VIRTIO_NET_HDR_GSO_NONE) {
      if (vnet.needsChecksum && !this.finishChecksum(pkt, pktLen, vnet.checksumStart, vnet.checksumOffset)) return;
      if (tracer === undefined) this.forward(pkt, pktLen);
      else this.forwardTraced(pkt, pktLen, tracer);
      return;
    }
    if (gsoType === VIRTIO_NET_HDR_GSO_TCPV6 && this.v6 !== undefined) {
      this.forwardSuperPacket6(pkt, pktLen, vnet.gsoSize, vnet.checksumStart, tracer);
      return;
    }
    if (gsoType !== VIRTIO_NET_HDR_GSO_TCPV4) {
      this.counters.drops.count('tun', 'unsupported-gso');
      return;
    }
    this.forwardSuperPacket(pkt, pktLen, vnet.headerLength, vnet.gsoSize, vnet.checksumStart, tracer);
  }

  private finishChecksum(pkt: number, pktLen: number, start: number, offset: number): boolean {
    try {
      completeChecksum(this.slab, pkt, pktLen, start, offset);
      return true;
    } catch {
      this.counters.drops.count('tun', 'bad-checksum-offsets');
      return false;
    }
  }

  /** A TCP super-packet: one route decision, then segments out through the SegmentSender. */
  private forwardSuperPacket(pkt: number, pktLen: number, hdrLen: number, gsoSize: number, csumStart: number, tracer: PacketTracer | undefined): void {
    const counters = this.counters;
    counters.tunIn.add(pktLen);
    const problem = checkIpv4(this.slab, pkt, pktLen);
    if (problem !== undefined) {
      counters.drops.count('tun-ipv4', problem);
      return;
    }
    const route = this.tables.routes.lookup(this.ip.wrap(this.slab, pkt).destination);
    if (route === undefined) {
      this.icmpUnreachable(ICMP_NET_UNREACHABLE, this.network.address, pkt, pktLen, 0);
      counters.drops.count('route', 'no-match');
      return;
    }
    this.flushOutbound(tracer);
    const sender = this.sourcePorts.senders[this.sourcePorts.pick(this.slab, pkt)];
    const sent = this.segments.send(sender, this.slab, pkt, pktLen, hdrLen, gsoSize, csumStart, route, this.tables);
    if (tracer !== undefined && tracer.wants(this.slab, pkt, pktLen)) {
      tracer.record(this.journeys.superPacket(this.slab, pkt, pktLen, route, this.tables, sent, this.segments.lastVia, tracer.withBytes));
    }
  }

  /**
   * A TCP/IPv6 super-packet (TSO6): one route decision, segments cut by tcpSegment6 behind one VXLAN + Ethernet
   * template, sent in one sendmmsg batch through the socket of the route's underlay. Segments larger than the path
   * (the kernel sized them for the TUN's MTU) are answered with Packet Too Big, as single packets are.
   */
  private forwardSuperPacket6(pkt: number, pktLen: number, gsoSize: number, csumStart: number, tracer: PacketTracer | undefined): void {
    const counters = this.counters;
    const v6 = this.v6!;
    const slab = this.slab;
    counters.tunIn.add(pktLen);
    if (!v6.checkOutbound(slab, pkt, pktLen)) return;
    const route = this.tables.routes6.lookupAt(slab, pkt + IPV6_DESTINATION_OFFSET);
    if (route === undefined) {
      this.icmpv6Error(ICMPV6_DEST_UNREACHABLE, ICMPV6_NO_ROUTE, 0, v6.networkBytes, pkt, pktLen);
      counters.drops.count('route6', 'no-match');
      return;
    }
    if (route.encap !== this.encap.name) {
      counters.drops.count('route6', 'wrong-encap');
      return;
    }
    if (!v6.resolve(route, this.tables)) return;
    const mtu = v6.overIpv6 ? this.overlayMtu6 : this.overlayMtu;
    const thl = pktLen >= IPV6_HEADER_LEN + 20 ? (slab[pkt + IPV6_HEADER_LEN + 12] >> 4) * 4 : 20;
    if (IPV6_HEADER_LEN + thl + gsoSize > mtu) {
      this.icmpv6Error(ICMPV6_PACKET_TOO_BIG, 0, mtu, v6.gatewayOf(route), pkt, pktLen);
      counters.drops.count('mtu', 'too-big');
      return;
    }
    const socket = v6.overIpv6 ? this.socket6 : this.sourcePorts.senders[this.sourcePorts.pick6(slab, pkt)];
    if (socket === undefined) {
      counters.drops.count('underlay6', 'no-socket');
      return;
    }
    const seg = this.segments6;
    this.encap.writeHeaders6!(seg.prefix, 0, v6.mac);
    const count = tcpSegment6(slab, pkt, pktLen, gsoSize, csumStart, seg.out, 0, seg.prefix, this.encap.headroom, seg.lengths);
    if (count < 0) {
      counters.drops.count('gso', 'cannot-segment');
      return;
    }
    this.flushOutbound(tracer);
    const gso = count > 1 && (v6.overIpv6 ? socket.sendGso6 !== undefined : socket.sendGso !== undefined);
    const sent = gso ? this.sendSegmentsGso6(socket, count) : this.sendSegmentsBatch6(socket, count);
    if (tracer !== undefined && tracer.wants(slab, pkt, pktLen)) {
      const via = `${v6.overIpv6 ? 'udp6' : 'udp'} socket, ${gso ? 'UDP GSO' : 'sendmmsg'}: ${count} segments`;
      tracer.record(this.journeys.superPacket6(slab, pkt, pktLen, route, this.tables, sent, via, tracer.withBytes));
    }
  }

  /** The TSO6 segments in segments6.out, one sendmmsg batch to the latest resolved underlay. */
  private sendSegmentsBatch6(socket: DatagramSocket, count: number): number {
    const seg = this.segments6;
    const v6 = this.v6!;
    const batch = seg.batch;
    batch.count = 0;
    for (let i = 0, at = 0; i < count; at += seg.lengths[i], i++) {
      batch.push(at, seg.lengths[i], v6.underlay4, this.local.port);
      if (v6.overIpv6) batch.addrs6.set(v6.underlay6, 4 * i);
    }
    return this.sendBatch(socket, batch);
  }

  /**
   * The TSO6 segments (back to back in segments6.out, all of the first's size but the last) by UDP GSO, at most
   * TSO6_GSO_SEGMENTS and TSO6_GSO_BYTES per call: the receiver's UDP GRO then gets runs to coalesce into its TUN,
   * as for IPv4 (segment-sender.ts). A call the kernel refuses counts its segments as a shortfall.
   */
  private sendSegmentsGso6(socket: DatagramSocket, count: number): number {
    const seg = this.segments6;
    const v6 = this.v6!;
    const lengths = seg.lengths;
    const size = lengths[0];
    const words = v6.underlay6;
    const flow = this.counters.underlayOut;
    let sent = 0;
    for (let first = 0, offset = 0; first < count; ) {
      let bytes = 0;
      let last = first;
      while (last < count && last - first < TSO6_GSO_SEGMENTS && bytes + lengths[last] <= TSO6_GSO_BYTES) bytes += lengths[last++];
      let result: GsoSendResult;
      try {
        result = v6.overIpv6
          ? socket.sendGso6!(seg.out, offset, bytes, size, words[0], words[1], words[2], words[3], this.local.port)
          : socket.sendGso!(seg.out, offset, bytes, size, v6.underlay4, this.local.port);
      } catch (error) {
        this.ioFailed(error, 'underlay-send', count - first);
        return sent;
      }
      if (result === 'sent' || result === 'split' || result === 'fallback') {
        for (let i = first; i < last; i++) flow.add(lengths[i]);
        sent += last - first;
      } else {
        this.faults.sendShortfall(socket, last - first);
      }
      offset += bytes;
      first = last;
    }
    return sent;
  }

  private get socketLabel(): string {
    return this.socket.kind === 'udp' ? 'udp socket, sendmmsg' : 'raw IPv4 protocol 4 socket, sendmmsg';
  }

  private receiveOne(off: number, len: number, sender: LeasedVtep | undefined, source: number, tracer: PacketTracer | undefined): void {
    // However many inner packets one receive holds (GRO), the queues never overflow: full ones go out first.
    if (this.inToTun.full) this.flushInbound(tracer);
    if (this.arpReplies.full) this.flushArpReplies();
    if (tracer === undefined) this.receive(off, len, sender, source, this.arpReplies);
    else this.receiveTraced(off, len, sender, source, tracer);
  }

  /**
   * The IPv6 underlay's receive loop: as inboundRound, the sender found by the four words of its address
   * (vtepOf6Words), Neighbor Advertisements queued back through socket6 to the asker's address.
   */
  private inboundRound6(): number {
    const socket6 = this.socket6!;
    const recv = this.inRecv6;
    const prepared = this.prepare(recv, this.inSlots6);
    if (prepared === 0) return 0;
    try {
      const gro = socket6.gro === true;
      let n: number;
      try {
        n = gro ? socket6.recvGro!(recv, this.segSizes) : socket6.recv(recv);
      } catch (error) {
        this.ioFailed(error, 'underlay-recv', 0);
        return 0;
      }
      if (n === 0) return 0;
      this.counters.inboundBatches.record(n);
      this.inToTun.count = 0;
      this.ndReplies6.count = 0;
      const tracer = this.tracer;
      const capacity = this.slotCapacity;
      const a = recv.addrs6;
      for (let i = 0; i < n; i++) {
        const off = recv.offsets[i];
        const len = Math.min(recv.lengths[i], capacity);
        const segment = gro ? this.segSizes[i] : 0;
        const sender = this.tables.vtepOf6Words(a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3]);
        if (segment === 0) {
          this.receiveOne6(off, len, sender, i, tracer);
          continue;
        }
        for (let at = off, end = off + len; at < end; at += segment) this.receiveOne6(at, Math.min(segment, end - at), sender, i, tracer);
      }
      this.flushInbound(tracer);
      this.flushNdReplies6();
      return n;
    } catch (error) {
      this.roundFailed(error, 'underlay-recv');
      return 0;
    } finally {
      this.inToTun.count = 0;
      this.ndReplies6.count = 0;
      this.release(this.inSlots6, prepared);
    }
  }

  private receiveOne6(off: number, len: number, sender: LeasedVtep | undefined, index: number, tracer: PacketTracer | undefined): void {
    if (this.inToTun.full) this.flushInbound(tracer);
    if (this.ndReplies6.full) this.flushNdReplies6();
    const replies = this.ndReplies6;
    const before = replies.count;
    if (tracer === undefined) this.receive(off, len, sender, 0, replies);
    else this.receiveTraced(off, len, sender, 0, tracer, replies);
    // The reply goes back to the asker's IPv6 address.
    if (replies.count > before) {
      const from = this.inRecv6.addrs6;
      const to = replies.addrs6;
      for (let k = 0; k < 4; k++) to[4 * before + k] = from[4 * index + k];
    }
  }

  private flushNdReplies6(): void {
    const replies = this.ndReplies6;
    if (replies.count > 0) this.sendBatch(this.socket6!, replies);
    replies.count = 0;
  }

  private flushInbound(tracer: PacketTracer | undefined): void {
    const toTun = this.inToTun;
    const written = toTun.count > 0 ? this.writeToTun(toTun) : 0;
    if (tracer !== undefined) this.journeys.finish(this.pendingJourneys, (i) => i < written, toTun.count, `tun ${this.tun.name} write`, tracer);
    toTun.count = 0;
  }

  /**
   * One datagram from the underlay: the sender must hold a lease (first, so a stranger's packets count as a
   * stranger's), then decapsulate, check the inner packet and its addresses (admission.ts), queue it for the TUN.
   */
  private receive(off: number, len: number, sender: LeasedVtep | undefined, source: number, replies: PacketBatch): number {
    const counters = this.counters;
    counters.underlayIn.add(len);
    if (sender === undefined) {
      counters.drops.count('underlay', 'unknown-vtep');
      return -1;
    }
    const inner = this.encap.decapsulate(this.slab, off, len, source, this.tables, replies, counters);
    if (inner < 0) return inner;
    if (this.encap.innerFamily === 6) {
      // Only an encapsulation that carries IPv6 says 6, and only when we have an IPv6 lease (vtepMac6).
      const v6 = this.v6;
      const packetLen = v6 === undefined ? -1 : v6.admit(this.slab, inner, off + len - inner, sender);
      if (v6 === undefined) counters.drops.count('inner-ipv6', 'ipv6-not-supported');
      if (packetLen >= 0) this.inToTun.push(inner, packetLen);
      return inner;
    }
    const problem = checkIpv4(this.slab, inner, off + len - inner);
    if (problem !== undefined) {
      counters.drops.count('inner-ipv4', problem);
      return inner;
    }
    const refused = this.admission.check(this.slab, inner, sender);
    if (refused !== undefined) {
      counters.drops.count('inner-ipv4', refused);
      return inner;
    }
    // Trim to the IPv4 length: Ethernet may have padded a short frame. receiveOne made room.
    this.inToTun.push(inner, this.ip.wrap(this.slab, inner).totalLength);
    return inner;
  }

  private receiveTraced(off: number, len: number, sender: LeasedVtep | undefined, source: number, tracer: PacketTracer, replies = this.arpReplies): void {
    const queuedBefore = this.inToTun.count;
    const arpBefore = this.counters.arpReplies + this.counters.neighborAdvertisements;
    const inner = this.receive(off, len, sender, source, replies);
    const delivered = this.inToTun.count > queuedBefore;
    if (delivered ? !tracer.wants(this.slab, inner, off + len - inner) : !tracer.wants(this.slab, 0, 0)) return;
    const arpAnswered = this.counters.arpReplies + this.counters.neighborAdvertisements > arpBefore;
    const from = sender !== undefined && typeof sender.underlayIp === 'bigint' ? sender.underlayIp : source;
    this.pendingJourneys.push(this.journeys.inbound(this.slab, off, len, from, inner, this.inToTun, queuedBefore, arpAnswered, tracer.withBytes));
  }

  /** Offers `batch` as many fresh pool slots as it holds (fewer when the pool runs low); returns how many. */
  private prepare(batch: PacketBatch, slots: Uint32Array): number {
    const pool = this.pool;
    const capacity = pool.slotSize - HEADROOM;
    let prepared = 0;
    for (; prepared < this.batchSize; prepared++) {
      const slot = pool.get();
      if (slot < 0) break;
      slots[prepared] = slot;
      batch.offsets[prepared] = pool.start(slot) + HEADROOM;
      batch.lengths[prepared] = capacity;
    }
    if (prepared === 0) {
      this.counters.drops.count('pool', 'exhausted');
      return 0;
    }
    batch.count = prepared;
    return prepared;
  }

  private release(slots: Uint32Array, n: number): void {
    for (let i = 0; i < n; i++) this.pool.put(slots[i]);
  }

  private flushArpReplies(): void {
    if (this.arpReplies.count > 0) this.sendToUnderlay(this.arpReplies);
    this.arpReplies.count = 0;
  }

  private sendToUnderlay(batch: PacketBatch): number {
    return this.sendBatch(this.socket, batch);
  }

  private sendBatch(socket: DatagramSocket, batch: PacketBatch): number {
    let sent: number;
    try {
      sent = socket.send(batch);
    } catch (error) {
      this.ioFailed(error, 'underlay-send', batch.count);
      return 0;
    }
    const flow = this.counters.underlayOut;
    for (let i = 0; i < sent; i++) flow.add(batch.lengths[i]);
    if (sent < batch.count) this.faults.sendShortfall(socket, batch.count - sent);
    return sent;
  }

  private writeToTun(batch: PacketBatch): number {
    let written: number;
    try {
      written = this.offload ? this.tun.writeCoalesced!(batch, this.coalesceScratch) : this.tun.write(batch);
    } catch (error) {
      this.ioFailed(error, 'tun-write', batch.count);
      return 0;
    }
    const flow = this.counters.tunOut;
    for (let i = 0; i < written; i++) flow.add(batch.lengths[i]);
    if (written < batch.count) this.counters.drops.count('tun', 'write-failed', batch.count - written);
    return written;
  }

  /** Queues an ICMP destination-unreachable about the packet at `off` for the TUN (RFC 792, RFC 1191). */
  private icmpUnreachable(code: number, from: number, off: number, len: number, mtu: number): void {
    if (!icmpErrorAllowed(this.slab, off)) return;
    if (!this.takeIcmpToken()) {
      this.counters.drops.count('icmp', 'rate-limited');
      return;
    }
    const replies = this.icmpReplies;
    if (replies.full) {
      this.counters.drops.count('icmp', 'no-room'); // a batch of 64 errors already waits for the TUN
      return;
    }
    const slot = this.pool.get();
    if (slot < 0) {
      this.counters.drops.count('icmp', 'no-room'); // the pool is empty: the error is not worth a packet
      return;
    }
    this.icmpSlots[replies.count] = slot;
    const start = this.pool.start(slot) + HEADROOM;
    const replyLen = emitIcmpUnreachable(this.slab, start, code, from, this.slab, off, len, mtu);
    replies.push(start, replyLen);
    this.counters.icmpErrors++;
  }

  /**
   * Queues an ICMPv6 error of `type` / `code` about the IPv6 packet at `off` for the TUN, from the 16 bytes at
   * from[0] (RFC 4443: Destination Unreachable, Packet Too Big with `param` as the MTU), rate-limited with IPv4's.
   */
  private icmpv6Error(type: number, code: number, param: number, from: Buffer, off: number, len: number): void {
    if (!icmpv6ErrorAllowed(this.slab, off, type)) return;
    if (!this.takeIcmpToken()) {
      this.counters.drops.count('icmp', 'rate-limited');
      return;
    }
    const replies = this.icmpReplies;
    if (replies.full) {
      this.counters.drops.count('icmp', 'no-room'); // a batch of 64 errors already waits for the TUN
      return;
    }
    const slot = this.pool.get();
    if (slot < 0) {
      this.counters.drops.count('icmp', 'no-room'); // the pool is empty: the error is not worth a packet
      return;
    }
    this.icmpSlots[replies.count] = slot;
    const start = this.pool.start(slot) + HEADROOM;
    const packetLen = Math.min(len, IPV6_HEADER_LEN + this.slab.readUInt16BE(off + 4));
    const replyLen = emitIcmpv6Error(this.slab, start, type, code, param, from, 0, this.slab, off, packetLen);
    replies.push(start, replyLen);
    this.counters.icmpErrors++;
  }

  private flushIcmpReplies(): void {
    if (this.icmpReplies.count === 0) return;
    this.writeToTun(this.icmpReplies);
    this.releaseIcmpReplies();
  }

  /** The ICMP replies' own slots go back to the pool (after their write, or when a round failed before it). */
  private releaseIcmpReplies(): void {
    this.release(this.icmpSlots, this.icmpReplies.count);
    this.icmpReplies.count = 0;
  }

  private takeIcmpToken(): boolean {
    const now = Date.now();
    if (now - this.icmpRefilledAt >= 1000) {
      this.icmpTokens = ICMP_ERRORS_PER_SECOND;
      this.icmpRefilledAt = now;
    }
    if (this.icmpTokens === 0) return false;
    this.icmpTokens--;
    return true;
  }
}
