// In-memory stand-ins for the TUN device and the underlay sockets (wireguard-go's tuntest / bindtest), so the engine
// is tested without root. They copy bytes (tests may allocate); the real devices are tested in test/net/.
import { IPV4_HEADER_LEN, IPPROTO_IPIP, emitIpv4 } from '../wire/ipv4';
import type { IPv4 } from '../wire/address';
import type { PacketBatch } from './batch';
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

  /** Offload devices: the packets as they are (a real TUN would coalesce TCP runs; the count is what matters here). */
  writeCoalesced(batch: PacketBatch, _scratch: Buffer): number {
    if (!this.offload) throw new Error(`fake TUN ${this.name} was not made with offload`);
    return this.write(batch);
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

  udp(address: IPv4, port: number): FakeSocket {
    return this.bind(new FakeSocket(this, 'udp', address, port));
  }

  raw(address: IPv4): FakeSocket {
    return this.bind(new FakeSocket(this, 'raw', address, 0));
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
  ) {}

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
      for (let at = off; at < off + len; at += segmentSize) {
        this.network.deliver(this.kind, this, addr, port, buf.subarray(at, Math.min(at + segmentSize, off + len)), !refused);
      }
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
