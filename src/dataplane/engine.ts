// The engine: two loops over one buffer pool.
//   outbound  TUN read batch -> check inner IPv4 -> route (LPM) -> [MTU / ICMP] -> encapsulate in place -> socket send batch
//   inbound   socket recv batch -> decapsulate (checks, ARP) -> check inner IPv4 -> TUN write batch
// Every decision is made here in TypeScript, every drop is counted by stage and reason, and nothing on these paths
// allocates: batches, views and slots are made once. Each readiness callback runs a bounded number of rounds and
// returns to the event loop, so inbound, outbound and the control plane take turns.
import { HEADROOM, type BufferPool } from '../buf/pool';
import { PacketBatch } from '../io/batch';
import type { DatagramSocket, TunDevice } from '../io/types';
import type { Cidr } from '../wire/address';
import { ICMP_FRAG_NEEDED, ICMP_NET_UNREACHABLE, emitIcmpUnreachable, icmpErrorAllowed } from '../wire/icmp';
import { Ipv4View, checkIpv4 } from '../wire/ipv4';
import { completeChecksum } from '../io/segmentation';
import { MAX_VIRTIO_NET_PACKET_LEN, VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_LEN, VirtioNetHeaderView } from '../wire/virtio-net';
import { Counters } from './counters';
import type { Encapsulation, LocalVtep } from './encap';
import { JourneyBuilder, type PacketTracer, type PendingJourney } from './journeys';
import type { DataPlaneLog } from './gso-fallback';
import { SegmentSender } from './segment-sender';
import { SourcePorts } from './source-ports';
import { ForwardingTables } from './tables';

export const DEFAULT_BATCH_SIZE = 64;
/** Bytes a pool slot needs after HEADROOM when the TUN hands over 64 KB TCP super-packets (offload). */
export const OFFLOAD_SLOT_BYTES = MAX_VIRTIO_NET_PACKET_LEN;
/** A UDP GRO receive holds up to 64 datagrams: room for that many inner packets per received buffer. */
const GRO_SEGMENTS = 64;
/** Batches per readiness callback before yielding to the event loop. */
const ROUNDS_PER_WAKEUP = 16;
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
  batchSize?: number;
  tables?: ForwardingTables;
  /** Events worth a line (a peer whose route refuses UDP GSO); counters hold the rest. */
  log?: DataPlaneLog;
}

export class Engine {
  tables: ForwardingTables;
  readonly counters: Counters;
  /** Set while someone traces; when undefined (the normal case) tracing costs one comparison per packet. */
  tracer: PacketTracer | undefined = undefined;
  private readonly tun: TunDevice;
  private readonly socket: DatagramSocket;
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
  private readonly inToTun: PacketBatch;
  private readonly arpReplies: PacketBatch;
  /** Offload (TSO/GSO/GRO) state: used only when the TUN or the socket offers it. */
  private readonly offload: boolean;
  private readonly vnet = new VirtioNetHeaderView();
  private readonly segments: SegmentSender;
  private readonly segSizes: Uint32Array;
  private readonly coalesceScratch: Buffer;

  private readonly journeys: JourneyBuilder;
  private readonly pendingJourneys: PendingJourney[] = [];
  private icmpTokens = ICMP_ERRORS_PER_SECOND;
  private icmpRefilledAt = 0;
  private running = false;

  constructor(options: EngineOptions) {
    this.tun = options.tun;
    this.socket = options.socket;
    this.encap = options.encap;
    this.pool = options.pool;
    this.slab = options.pool.slab;
    this.overlayMtu = options.overlayMtu;
    this.network = options.network;
    this.batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
    this.tables = options.tables ?? new ForwardingTables();
    this.counters = new Counters(this.batchSize);
    this.offload = this.tun.offload;
    const needed = this.offload || this.socket.gro ? OFFLOAD_SLOT_BYTES : options.overlayMtu + this.encap.headroom;
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
    this.segments = new SegmentSender(this.encap, this.counters, this.sourcePorts.senders[0].sendGso !== undefined, { log: options.log });
    this.segSizes = new Uint32Array(b);
    this.coalesceScratch = this.offload ? Buffer.alloc(OFFLOAD_SLOT_BYTES) : Buffer.alloc(0);
    this.journeys = new JourneyBuilder(this.encap.name, options.local, this.tun.name, this.counters.drops);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.tun.watch(() => this.pumpOutbound());
    this.socket.watch(() => this.pumpInbound());
  }

  stop(): void {
    this.running = false;
    this.tun.close();
    this.socket.close();
    for (const sender of this.sourcePorts.senders) sender.close();
  }

  /** Moves packets TUN -> underlay until the TUN is empty or this wake-up's share is used. */
  pumpOutbound(): void {
    for (let round = 0; round < ROUNDS_PER_WAKEUP; round++) {
      if (this.outboundRound() < this.batchSize) return;
    }
  }

  /** Moves datagrams underlay -> TUN until the socket is empty or this wake-up's share is used. */
  pumpInbound(): void {
    for (let round = 0; round < ROUNDS_PER_WAKEUP; round++) {
      if (this.inboundRound() < this.batchSize) return;
    }
  }

  private outboundRound(): number {
    const read = this.outRead;
    const prepared = this.prepare(read, this.outSlots);
    const n = prepared === 0 ? 0 : this.tun.read(read);
    this.returnUnused(this.outSlots, n, prepared);
    if (n === 0) return 0;
    this.counters.outboundBatches.record(n);
    this.outSend.count = 0;
    const tracer = this.tracer;
    if (this.offload) {
      for (let i = 0; i < n; i++) this.forwardOffloaded(read.offsets[i], read.lengths[i], tracer);
    } else if (tracer === undefined) {
      for (let i = 0; i < n; i++) this.forward(read.offsets[i], read.lengths[i]);
    } else {
      for (let i = 0; i < n; i++) this.forwardTraced(read.offsets[i], read.lengths[i], tracer);
    }
    this.flushOutbound(tracer);
    this.flushIcmpReplies();
    this.release(this.outSlots, n);
    return n;
  }

  /** One packet from the TUN: check it, route it, encapsulate it onto outSend. */
  private forward(off: number, len: number): void {
    const counters = this.counters;
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

  private inboundRound(): number {
    const recv = this.inRecv;
    const prepared = this.prepare(recv, this.inSlots);
    const gro = this.socket.gro === true;
    const n = prepared === 0 ? 0 : gro ? this.socket.recvGro!(recv, this.segSizes) : this.socket.recv(recv);
    this.returnUnused(this.inSlots, n, prepared);
    if (n === 0) return 0;
    this.counters.inboundBatches.record(n);
    const toTun = this.inToTun;
    toTun.count = 0;
    this.arpReplies.count = 0;
    const tracer = this.tracer;
    for (let i = 0; i < n; i++) {
      const off = recv.offsets[i];
      const len = recv.lengths[i];
      const segment = gro ? this.segSizes[i] : 0;
      if (segment === 0) {
        this.receiveOne(off, len, recv.addrs[i], tracer);
        continue;
      }
      // UDP GRO: one buffer, several datagrams of one sender, each `segment` bytes but the last.
      for (let at = off, end = off + len; at < end; at += segment) this.receiveOne(at, Math.min(segment, end - at), recv.addrs[i], tracer);
    }
    this.flushInbound(tracer);
    if (this.arpReplies.count > 0) this.sendToUnderlay(this.arpReplies);
    this.release(this.inSlots, n);
    return n;
  }

  private forwardTraced(off: number, len: number, tracer: PacketTracer): void {
    if (!tracer.wants(this.slab, off, len)) {
      this.forward(off, len);
      return;
    }
    const sentBefore = this.outSend.count;
    const icmpBefore = this.icmpReplies.count;
    this.forward(off, len);
    const icmpSent = this.icmpReplies.count > icmpBefore;
    this.pendingJourneys.push(this.journeys.outbound(this.slab, off, len, this.tables, this.outSend, sentBefore, icmpSent, tracer.withBytes));
  }

  /** Sends what this round queued so far (before a super-packet, so that its segments do not overtake them). */
  private flushOutbound(tracer: PacketTracer | undefined): void {
    const send = this.outSend;
    if (send.count > 0) {
      const sent = this.sourcePorts.send(send, this.outSender, this.outSent);
      const flow = this.counters.underlayOut;
      for (let i = 0; i < send.count; i++) if (this.outSent[i] === 1) flow.add(send.lengths[i]);
      if (sent < send.count) this.counters.drops.count('underlay', 'send-failed', send.count - sent);
    }
    if (tracer !== undefined) this.journeys.finish(this.pendingJourneys, (i) => this.outSent[i] === 1, send.count, this.socketLabel, tracer);
    send.count = 0;
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

  private get socketLabel(): string {
    return this.socket.kind === 'udp' ? 'udp socket, sendmmsg' : 'raw IPv4 protocol 4 socket, sendmmsg';
  }

  private receiveOne(off: number, len: number, source: number, tracer: PacketTracer | undefined): void {
    if (tracer === undefined) this.receive(off, len, source);
    else this.receiveTraced(off, len, source, tracer);
  }

  private flushInbound(tracer: PacketTracer | undefined): void {
    const toTun = this.inToTun;
    const written = toTun.count > 0 ? this.writeToTun(toTun) : 0;
    if (tracer !== undefined) this.journeys.finish(this.pendingJourneys, (i) => i < written, toTun.count, `tun ${this.tun.name} write`, tracer);
    toTun.count = 0;
  }

  /** One datagram from the underlay: decapsulate, check the inner packet, queue it for the TUN. */
  private receive(off: number, len: number, source: number): number {
    const counters = this.counters;
    counters.underlayIn.add(len);
    const inner = this.encap.decapsulate(this.slab, off, len, source, this.tables, this.arpReplies, counters);
    if (inner < 0) return inner;
    const problem = checkIpv4(this.slab, inner, off + len - inner);
    if (problem !== undefined) {
      counters.drops.count('inner-ipv4', problem);
      return inner;
    }
    // Trim to the IPv4 length: Ethernet may have padded a short frame.
    this.inToTun.push(inner, this.ip.wrap(this.slab, inner).totalLength);
    return inner;
  }

  private receiveTraced(off: number, len: number, source: number, tracer: PacketTracer): void {
    const queuedBefore = this.inToTun.count;
    const arpBefore = this.counters.arpReplies;
    const inner = this.receive(off, len, source);
    const delivered = this.inToTun.count > queuedBefore;
    if (delivered ? !tracer.wants(this.slab, inner, off + len - inner) : !tracer.wants(this.slab, 0, 0)) return;
    const arpAnswered = this.counters.arpReplies > arpBefore;
    this.pendingJourneys.push(this.journeys.inbound(this.slab, off, len, source, inner, this.inToTun, queuedBefore, arpAnswered, tracer.withBytes));
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

  private returnUnused(slots: Uint32Array, used: number, prepared: number): void {
    for (let i = used; i < prepared; i++) this.pool.put(slots[i]);
  }

  private release(slots: Uint32Array, n: number): void {
    for (let i = 0; i < n; i++) this.pool.put(slots[i]);
  }

  private sendToUnderlay(batch: PacketBatch): number {
    const sent = this.socket.send(batch);
    const flow = this.counters.underlayOut;
    for (let i = 0; i < sent; i++) flow.add(batch.lengths[i]);
    if (sent < batch.count) this.counters.drops.count('underlay', 'send-failed', batch.count - sent);
    return sent;
  }

  private writeToTun(batch: PacketBatch): number {
    const written = this.offload ? this.tun.writeCoalesced!(batch, this.coalesceScratch) : this.tun.write(batch);
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
    if (replies.count >= replies.capacity) return;
    const slot = this.pool.get();
    if (slot < 0) return;
    this.icmpSlots[replies.count] = slot;
    const start = this.pool.start(slot) + HEADROOM;
    const replyLen = emitIcmpUnreachable(this.slab, start, code, from, this.slab, off, len, mtu);
    replies.push(start, replyLen);
    this.counters.icmpErrors++;
  }

  private flushIcmpReplies(): void {
    const replies = this.icmpReplies;
    if (replies.count === 0) return;
    this.writeToTun(replies);
    this.release(this.icmpSlots, replies.count);
    replies.count = 0;
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
