// In-memory stand-ins for the TUN device and the underlay sockets (wireguard-go's tuntest / bindtest), so the engine
// is tested without root. They copy bytes (tests may allocate); the real devices are tested in test/net/.
import { closeSync, openSync, readSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IPV4_HEADER_LEN, IPPROTO_IPIP, emitIpv4 } from '../wire/ipv4';
import type { IPv4 } from '../wire/address';
import type { PacketBatch } from './batch';
import { native } from './native';
import { tcpSegment } from './segmentation';
import type { DatagramSocket, GsoSendResult, TunDevice } from './types';
import type { TunIoMode } from './types';

/** Calls a watcher once, soon, however many packets arrive meanwhile (level-triggered, like uv_poll). */
class Readiness {
  private callback?: () => void;
  private scheduled = false;

  watch(callback: () => void): void {
    this.callback = callback;
  }

  notify(): void {
    if (this.callback === undefined || this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.callback?.();
    });
  }

  close(): void {
    this.callback = undefined;
  }
}

/**
 * A packet longer than its slot: only the slot's capacity is stored, and the reported length is what the real call
 * reports: a TUN read the packet's full length (drivers/net/tun.c tun_put_user), a socket receive 0 (MSG_TRUNC,
 * native/socket.cc).
 */
type TooLong = 'full-length' | 'zero';

function readQueue<T extends { data: Buffer }>(queue: T[], batch: PacketBatch, tooLong: TooLong, fill: (i: number, item: T) => void): number {
  let n = 0;
  while (n < batch.count && queue.length > 0) {
    const item = queue.shift()!;
    const capacity = batch.lengths[n];
    const len = Math.min(item.data.length, capacity);
    item.data.copy(batch.slab, batch.offsets[n], 0, len);
    batch.lengths[n] = item.data.length <= capacity ? len : tooLong === 'full-length' ? item.data.length : 0;
    fill(n, item);
    n++;
  }
  batch.count = n;
  return n;
}

/** Errors a test makes a fake's calls throw, as the native calls would (system errors: code, errno, syscall). */
class Failures<Op extends string> {
  private readonly errors = new Map<Op, Error>();

  /** Makes every `op` call throw `error` until cleared with undefined. */
  set(op: Op, error: Error | undefined): void {
    if (error === undefined) this.errors.delete(op);
    else this.errors.set(op, error);
  }

  check(op: Op): void {
    const error = this.errors.get(op);
    if (error !== undefined) throw error;
  }
}

/** A Node-shaped system error, as native/errors.cc throws (`read failed: ... (EBADFD)`). */
export function fakeSystemError(code: string, errno: number, syscall: string): Error {
  return Object.assign(new Error(`${syscall} failed: fake (${code})`), { code, errno, syscall });
}

export class FakeTun implements TunDevice {
  /** Packets the engine wrote towards the kernel. */
  readonly written: Buffer[] = [];
  private readonly pending: { data: Buffer }[] = [];
  private readonly readiness = new Readiness();
  /** Make read / write throw, as the native calls do when the device is gone. */
  readonly failures = new Failures<'read' | 'write'>();
  closed = false;

  /**
   * With `offload`, injected packets must start with a virtio_net_hdr, as reads from an IFF_VNET_HDR TUN do. With io
   * `uring`, reads hand back the offered slots in another order (filled slots first, as native/uring.cc may swap
   * offset/length pairs): the engine must not assume slot i of a batch is the i-th slot it offered.
   */
  constructor(
    readonly name = 'fake0',
    readonly mtu = 1450,
    readonly offload = false,
    readonly io: TunIoMode = 'readv',
  ) {}

  /** A packet the kernel routed into the TUN. */
  inject(packet: Buffer): void {
    this.pending.push({ data: Buffer.from(packet) });
    this.readiness.notify();
  }

  read(batch: PacketBatch): number {
    this.failures.check('read');
    if (this.io === 'uring') {
      // A permutation of the offered slots, the last offered first.
      batch.offsets.subarray(0, batch.count).reverse();
      batch.lengths.subarray(0, batch.count).reverse();
    }
    const n = readQueue(this.pending, batch, 'full-length', () => {});
    if (this.pending.length > 0) this.readiness.notify(); // level-triggered: still readable
    return n;
  }

  /**
   * Offload devices: what the kernel got from each write of writeCoalesced, virtio_net_hdr included: a coalesced TCP
   * super-packet (gsoType 1, gsoSize the members' payload) or one packet (gsoType 0). `written` still lists the
   * packets one by one, as the engine queued them.
   */
  readonly writes: { flags: number; gsoType: number; hdrLen: number; gsoSize: number; csumStart: number; csumOffset: number; packet: Buffer }[] = [];
  /** The file the native coalescer writes into (a regular file keeps every write; each record says its length). */
  private coalesceFd = -1;
  private coalesceRead = 0;

  /**
   * Offload devices: the real native coalescer (tunWriteCoalesced, native/offload.cc) writes into a temporary file
   * instead of a TUN; each write is read back into `writes`, and the batch's packets go to `written`.
   */
  writeCoalesced(batch: PacketBatch, scratch: Buffer): number {
    if (!this.offload) throw new Error(`fake TUN ${this.name} was not made with offload`);
    this.failures.check('write');
    if (this.coalesceFd < 0) {
      const path = join(tmpdir(), `vxtun-fake-tun-${process.pid}-${this.name}-${Date.now()}`);
      this.coalesceFd = openSync(path, 'w+');
      unlinkSync(path); // the fd keeps it until close()
    }
    // Copies first: the coalescer rewrites the first packet of a run in place (its length and checksum become the
    // super-packet's) before gathering the run from the slab.
    const queued: Buffer[] = [];
    for (let i = 0; i < batch.count; i++) queued.push(Buffer.from(batch.slab.subarray(batch.offsets[i], batch.offsets[i] + batch.lengths[i])));
    const accepted = native().tunWriteCoalesced(this.coalesceFd, batch.slab, batch.offsets, batch.lengths, batch.count, scratch);
    this.readCoalescedWrites();
    this.written.push(...queued.slice(0, accepted));
    return accepted;
  }

  /** Parses the records written since the last call: a 10-byte virtio_net_hdr, then an IPv4 or IPv6 packet (its own length). */
  private readCoalescedWrites(): void {
    const head = Buffer.alloc(16);
    for (;;) {
      if (readSync(this.coalesceFd, head, 0, 16, this.coalesceRead) < 16) return;
      const length = head[10]! >> 4 === 6 ? 40 + head.readUInt16BE(14) : head.readUInt16BE(12);
      const packet = Buffer.alloc(length);
      readSync(this.coalesceFd, packet, 0, length, this.coalesceRead + 10);
      this.writes.push({
        flags: head[0], gsoType: head[1], hdrLen: head.readUInt16LE(2), gsoSize: head.readUInt16LE(4),
        csumStart: head.readUInt16LE(6), csumOffset: head.readUInt16LE(8), packet,
      });
      this.coalesceRead += 10 + length;
    }
  }

  write(batch: PacketBatch): number {
    this.failures.check('write');
    for (let i = 0; i < batch.count; i++) {
      this.written.push(Buffer.from(batch.slab.subarray(batch.offsets[i], batch.offsets[i] + batch.lengths[i])));
    }
    return batch.count;
  }

  watch(onReadable: () => void): void {
    this.readiness.watch(onReadable);
  }

  close(): void {
    this.closed = true;
    this.readiness.close();
    if (this.coalesceFd >= 0) closeSync(this.coalesceFd);
    this.coalesceFd = -1;
  }
}

interface Datagram {
  data: Buffer;
  addr: IPv4;
  port: number;
  /** As UDP GRO reports: several datagrams of `segment` bytes (the last may be shorter) in one buffer; 0 for one. */
  segment?: number;
}

/** An underlay joining fake sockets by address (and port, for UDP). */
export class FakeNetwork {
  private readonly endpoints = new Map<string, FakeSocket>();
  /** Every datagram sent on this network, for tests that look at the wire. */
  readonly log: { kind: 'udp' | 'raw'; from: IPv4; fromPort: number; to: IPv4; port: number; data: Buffer; df?: boolean; gso?: boolean }[] = [];
  /**
   * A UDP GSO send reaches a socket with `gro` on as one GRO receive (segment size and all), as the kernel hands it
   * over between namespaces (the GSO skb crosses veth whole; udp_gro_receive keeps it). Off: segment by segment.
   */
  gsoArrivesWhole = false;

  udp(address: IPv4, port: number): FakeSocket {
    return this.bind(new FakeSocket(this, 'udp', address, port));
  }

  raw(address: IPv4): FakeSocket {
    return this.bind(new FakeSocket(this, 'raw', address, 0));
  }

  /** @internal A GSO send of `payload` in segments of `segmentSize`: whole to a GRO socket (gsoArrivesWhole), or
   *  segment by segment. Each segment is logged. Returns false when nothing listens there. */
  deliverGso(from: FakeSocket, to: IPv4, port: number, payload: Buffer, segmentSize: number, gso: boolean): boolean {
    const target = this.endpoints.get(FakeNetwork.key('udp', to, port));
    if (!(gso && this.gsoArrivesWhole && target?.gro === true)) {
      let delivered = true;
      for (let at = 0; at < payload.length; at += segmentSize) {
        delivered = this.deliver('udp', from, to, port, payload.subarray(at, Math.min(at + segmentSize, payload.length)), gso) && delivered;
      }
      return delivered;
    }
    for (let at = 0; at < payload.length; at += segmentSize) {
      const data = Buffer.from(payload.subarray(at, Math.min(at + segmentSize, payload.length)));
      this.log.push({ kind: 'udp', from: from.address, fromPort: from.port, to, port, data, df: from.dontFragment, gso });
    }
    target.enqueue({ data: Buffer.from(payload), addr: from.address, port: from.port, segment: segmentSize });
    return true;
  }

  /** @internal */
  unbind(socket: FakeSocket): void {
    this.endpoints.delete(FakeNetwork.key(socket.kind, socket.address, socket.port));
  }

  /** @internal Delivers one datagram; returns false when nothing listens there (the datagram is lost, as on a wire). */
  deliver(kind: 'udp' | 'raw', from: FakeSocket, to: IPv4, port: number, payload: Buffer, gso = false): boolean {
    this.log.push({ kind, from: from.address, fromPort: from.port, to, port, data: Buffer.from(payload), df: from.dontFragment, gso });
    const target = this.endpoints.get(FakeNetwork.key(kind, to, kind === 'udp' ? port : 0));
    if (target === undefined) return false;
    if (kind === 'udp') {
      target.enqueue({ data: Buffer.from(payload), addr: from.address, port: from.port });
    } else {
      // A raw receive includes the outer IPv4 header the sending kernel wrote.
      const packet = Buffer.alloc(IPV4_HEADER_LEN + payload.length);
      emitIpv4({ source: from.address, destination: to, protocol: IPPROTO_IPIP, payloadLength: payload.length, ttl: 64 }, packet, 0);
      payload.copy(packet, IPV4_HEADER_LEN);
      target.enqueue({ data: packet, addr: from.address, port: 0 });
    }
    return true;
  }

  private bind(socket: FakeSocket): FakeSocket {
    const key = FakeNetwork.key(socket.kind, socket.address, socket.port);
    if (this.endpoints.has(key)) throw Object.assign(new Error(`fake ${key} is already in use`), { code: 'EADDRINUSE' });
    this.endpoints.set(key, socket);
    return socket;
  }

  private static key(kind: string, address: IPv4, port: number): string {
    return `${kind}:${address}:${port}`;
  }
}

export class FakeSocket implements DatagramSocket {
  private readonly pending: Datagram[] = [];
  private readonly readiness = new Readiness();
  /** Make recv / send throw, as the native calls do. */
  readonly failures = new Failures<'recv' | 'send'>();
  /** Set before the engine is made to receive with recvGro (slots of OFFLOAD_SLOT_BYTES, see Engine). */
  gro = false;
  closed = false;

  constructor(
    private readonly network: FakeNetwork,
    readonly kind: 'udp' | 'raw',
    readonly address: IPv4,
    readonly port: number,
  ) {
    if (kind === 'raw') this.sendSegments = (...args) => this.fakeSendSegments(...args);
  }

  /** Raw sockets, as RawSocket.sendSegments: a TCP super-packet sent as its segments, one call. */
  sendSegments?: (slab: Buffer, pktOff: number, pktLen: number, hdrLen: number, gsoSize: number, csumStart: number, addr: IPv4, segLengths: Uint32Array) => number;
  /** sendSegments calls, for tests counting system calls. */
  segmentCalls = 0;
  private segmentOut: Buffer | undefined;

  /**
   * Cuts with the native tcpSegment (native/offload.cc, the same rules as the real call's native/tcp-segment.h; the
   * real call itself is tested in test/net/speed-ipip.test.ts) and delivers each segment, as one sendmmsg would.
   */
  private fakeSendSegments(slab: Buffer, pktOff: number, pktLen: number, hdrLen: number, gsoSize: number, csumStart: number, addr: IPv4, segLengths: Uint32Array): number {
    this.failures.check('send');
    this.segmentCalls++;
    this.segmentOut ??= Buffer.alloc(65535 + 128 * 120);
    const count = tcpSegment(slab, pktOff, pktLen, hdrLen, gsoSize, csumStart, this.segmentOut, 0, this.segmentOut, 0, 0, segLengths);
    if (count < 0) return -1;
    for (let i = 0, at = 0; i < count; at += segLengths[i], i++) {
      this.network.deliver('raw', this, addr, 0, this.segmentOut.subarray(at, at + segLengths[i]));
    }
    return count;
  }

  /** @internal */
  enqueue(datagram: Datagram): void {
    this.pending.push(datagram);
    this.readiness.notify();
  }

  /** A datagram from anywhere (a test playing a peer or an attacker). */
  inject(data: Buffer, from: IPv4, fromPort = 0): void {
    this.enqueue({ data: Buffer.from(data), addr: from, port: fromPort });
  }

  /** A GRO receive: `data` holds datagrams of `segment` bytes each (the last may be shorter), from one sender. */
  injectGro(data: Buffer, segment: number, from: IPv4, fromPort = 0): void {
    this.enqueue({ data: Buffer.from(data), addr: from, port: fromPort, segment });
  }

  recv(batch: PacketBatch): number {
    this.failures.check('recv');
    const n = readQueue(this.pending, batch, 'zero', (i, item) => {
      batch.addrs[i] = item.addr;
      batch.ports[i] = item.port;
    });
    if (this.pending.length > 0) this.readiness.notify(); // level-triggered: still readable
    return n;
  }

  /** As recv; segSizes[i] as native udpRecvGro sets it (the segment size when it is below the length, else 0). */
  recvGro(batch: PacketBatch, segSizes: Uint32Array): number {
    this.failures.check('recv');
    const n = readQueue(this.pending, batch, 'zero', (i, item) => {
      batch.addrs[i] = item.addr;
      batch.ports[i] = item.port;
      const segment = item.segment ?? 0;
      segSizes[i] = segment > 0 && segment < batch.lengths[i] ? segment : 0;
    });
    if (this.pending.length > 0) this.readiness.notify();
    return n;
  }

  send(batch: PacketBatch): number {
    this.failures.check('send');
    for (let i = 0; i < batch.count; i++) {
      const payload = batch.slab.subarray(batch.offsets[i], batch.offsets[i] + batch.lengths[i]);
      this.network.deliver(this.kind, this, batch.addrs[i], batch.ports[i], payload);
    }
    return batch.count;
  }

  /** The outer DF bit of later sends, as setDontFragment left it (undefined: never set); logged with each datagram. */
  dontFragment: boolean | undefined = undefined;
  /** setDontFragment calls, for tests counting system calls. */
  dfSwitches = 0;

  setDontFragment(on: boolean): void {
    this.dontFragment = on;
    this.dfSwitches++;
  }

  /** UDP GSO, once enableGso() was called. */
  sendGso?: (buf: Buffer, off: number, len: number, segmentSize: number, addr: IPv4, port: number) => GsoSendResult;
  /** Destinations whose GSO sends this socket refuses as the kernel does on a route that cannot take them. */
  readonly refuseGsoTo = new Set<IPv4>();
  /** GSO sends attempted, refused ones included. */
  gsoCalls = 0;

  /**
   * Makes this socket offer UDP GSO like UdpSocket.sendGso: the segments are delivered (logged with gso: true) and it
   * answers 'sent'; to a destination in refuseGsoTo it answers 'fallback' after delivering them one by one, as the
   * native call does when the kernel says EIO or EINVAL.
   */
  enableGso(): this {
    this.sendGso = (buf, off, len, segmentSize, addr, port) => {
      this.gsoCalls++;
      const refused = this.refuseGsoTo.has(addr);
      this.network.deliverGso(this, addr, port, buf.subarray(off, off + len), segmentSize, !refused);
      return refused ? 'fallback' : 'sent';
    };
    return this;
  }

  watch(onReadable: () => void): void {
    this.readiness.watch(onReadable);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.readiness.close();
    this.network.unbind(this);
  }
}
