// Sends a TCP super-packet (TSO, read from an offload TUN) as the MTU-sized segments the underlay needs: native code
// cuts it into segments led by the encapsulation's headers (one template for all), and UDP GSO hands them to the
// kernel in one system call per 64 KB instead of one per segment. Where GSO is missing (raw IP-in-IP sockets) or
// refused toward a destination (gso-fallback.ts: that destination only, retried later), the segments go out in one
// sendmmsg batch. A raw IP-in-IP socket, which has no GSO, takes the super-packet whole (sendSegments): native code cuts
// and checksums the segments and sends them in one sendmmsg, headers from a scratch buffer and payloads in place, so
// one crossing into native code and one system call carry 64 KB, and the payload is copied once (by the kernel).
import { PacketBatch } from '../io/batch';
import { tcpSegment } from '../io/segmentation';
import type { DatagramSocket } from '../io/types';
import type { Counters } from './counters';
import type { Encapsulation } from './encap';
import { GsoFallback, type GsoFallbackOptions } from './gso-fallback';
import type { ForwardingTables, Route } from './tables';

/** Segments one super-packet may make; more (a tiny MSS) is dropped and counted. */
const MAX_SEGMENTS = 128;
/** A 64 KB payload plus MAX_SEGMENTS copies of the largest headers (22 encapsulation + 60 IP + 60 TCP). */
const SEGMENT_BUFFER_BYTES = 65535 + MAX_SEGMENTS * 142;
/** One UDP GSO call: the kernel's UDP_MAX_SEGMENTS, and one IPv4 datagram's payload. */
const GSO_MAX_SEGMENTS = 64;
const GSO_MAX_BYTES = 65507;

export interface SegmentSenderOptions extends GsoFallbackOptions {
  /** Hand super-packets whole to sockets with sendSegments (default true); false: segment here, then sendmmsg. */
  nativeSegments?: boolean;
}

export class SegmentSender {
  private readonly out = Buffer.alloc(SEGMENT_BUFFER_BYTES);
  private readonly prefix = Buffer.alloc(64);
  private readonly lengths = new Uint32Array(MAX_SEGMENTS);
  private readonly batch = new PacketBatch(this.out, MAX_SEGMENTS);
  /** The sockets offer UDP GSO (raw IP-in-IP sockets do not). */
  private readonly gso: boolean;
  /** Destinations whose route refused GSO, sending one by one until their next try. */
  readonly fallback: GsoFallback;
  /** How the last super-packet left, for traces. */
  lastVia = '';
  /** Use a socket's sendSegments when it has one (raw IP-in-IP); false keeps the segment-then-sendmmsg path. */
  private readonly nativeSegments: boolean;

  constructor(
    private readonly encap: Encapsulation,
    private readonly counters: Counters,
    gso: boolean,
    options: SegmentSenderOptions = {},
    /** Counts datagrams a send did not hand to the kernel (the engine names the reason: IoFaults.sendShortfall). */
    private readonly shortfall: (socket: DatagramSocket, lost: number) => void = (_socket, lost) => counters.drops.count('underlay', 'send-failed', lost),
  ) {
    this.gso = gso;
    this.fallback = new GsoFallback(counters, options);
    this.nativeSegments = options.nativeSegments ?? true;
  }

  /** Sends through `socket`; returns the number of segments handed to the kernel, 0 when dropped (counted). */
  send(socket: DatagramSocket, slab: Buffer, pkt: number, pktLen: number, hdrLen: number, gsoSize: number, csumStart: number, route: Route, tables: ForwardingTables): number {
    const encap = this.encap;
    if (!encap.writeHeaders(this.prefix, 0, route, tables, this.counters)) return 0;
    if (this.nativeSegments && encap.headroom === 0 && socket.sendSegments !== undefined) {
      return this.sendSegments(socket, slab, pkt, pktLen, hdrLen, gsoSize, csumStart);
    }
    const count = tcpSegment(slab, pkt, pktLen, hdrLen, gsoSize, csumStart, this.out, 0, this.prefix, 0, encap.headroom, this.lengths);
    if (count < 0) {
      this.counters.drops.count('gso', 'cannot-segment');
      return 0;
    }
    const useGso = this.gso && socket.sendGso !== undefined && this.fallback.allowed(encap.nextHop);
    return useGso ? this.sendGso(socket, count) : this.sendBatch(socket, 0, count, 0);
  }

  /** Equal-size runs of segments, up to the GSO limits per system call. */
  private sendGso(socket: DatagramSocket, count: number): number {
    const lengths = this.lengths;
    const size = lengths[0];
    let sent = 0;
    let calls = 0;
    let first = 0;
    let offset = 0;
    while (first < count) {
      let bytes = 0;
      let last = first;
      while (last < count && last - first < GSO_MAX_SEGMENTS && bytes + lengths[last] <= GSO_MAX_BYTES) bytes += lengths[last++];
      const result = socket.sendGso!(this.out, offset, bytes, size, this.encap.nextHop, this.encap.nextHopPort);
      calls++;
      if (result === 'sent' || result === 'split' || result === 'fallback') {
        for (let i = first; i < last; i++) this.counters.underlayOut.add(lengths[i]);
        sent += last - first;
        if (result === 'fallback') {
          // The kernel sent this run one by one and refuses GSO on this route: the rest goes in one sendmmsg batch.
          this.fallback.refusedBy(this.encap.nextHop);
          offset += bytes;
          if (last < count) sent += this.sendBatch(socket, last, count, offset);
          this.lastVia = `udp socket, UDP GSO refused (sent one by one, GSO retried later): ${count} datagrams of ${size} B`;
          return sent;
        }
        if (first === 0) this.fallback.accepted(this.encap.nextHop);
      } else {
        this.shortfall(socket, last - first);
      }
      offset += bytes;
      first = last;
    }
    this.lastVia = `udp socket, UDP GSO: ${count} datagrams of ${size} B in ${calls} sendmsg`;
    return sent;
  }

  /** The whole super-packet to a socket that segments natively (raw IP-in-IP): one call, one sendmmsg. */
  private sendSegments(socket: DatagramSocket, slab: Buffer, pkt: number, pktLen: number, hdrLen: number, gsoSize: number, csumStart: number): number {
    const lengths = this.lengths;
    const sent = socket.sendSegments!(slab, pkt, pktLen, hdrLen, gsoSize, csumStart, this.encap.nextHop, lengths);
    if (sent < 0) {
      this.counters.drops.count('gso', 'cannot-segment');
      return 0;
    }
    // The native call validated the headers: their lengths give the segment count.
    const ihl = (slab[pkt] & 0x0f) * 4;
    const payload = pktLen - ihl - (slab[pkt + ihl + 12] >> 4) * 4;
    const count = payload === 0 ? 1 : Math.ceil(payload / gsoSize);
    for (let i = 0; i < sent; i++) this.counters.underlayOut.add(lengths[i]);
    if (sent < count) this.shortfall(socket, count - sent);
    this.lastVia = `${socket.kind} socket, segmented natively, sendmmsg: ${count} segments`;
    return sent;
  }

  /** Segments [first, count), the first at `offset` in the output buffer, in one sendmmsg batch. */
  private sendBatch(socket: DatagramSocket, first: number, count: number, offset: number): number {
    const batch = this.batch;
    batch.count = 0;
    for (let i = first; i < count; i++) {
      batch.push(offset, this.lengths[i], this.encap.nextHop, this.encap.nextHopPort);
      offset += this.lengths[i];
    }
    const sent = socket.send(batch);
    for (let i = 0; i < sent; i++) this.counters.underlayOut.add(batch.lengths[i]);
    if (sent < batch.count) this.shortfall(socket, batch.count - sent);
    this.lastVia = `${socket.kind} socket, sendmmsg: ${count - first} segments`;
    return sent;
  }
}
