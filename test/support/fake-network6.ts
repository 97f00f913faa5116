// An IPv6 underlay for engine tests: UDP sockets of family 6 joined by address (bigint) and port, moving peers in
// PacketBatch.addrs6 words as v6-underlay's real socket does (the issue 12 contract). Test support: copies bytes.
import type { PacketBatch } from '../../src/io/batch';
import type { DatagramSocket } from '../../src/io/types';
import { type IPv6, ipv6FromWords, ipv6Words } from '../../src/wire/address6';

interface Datagram6 {
  data: Buffer;
  addr: IPv6;
  port: number;
  segment?: number;
}

export class FakeNetwork6 {
  private readonly endpoints = new Map<string, FakeSocket6>();
  readonly log: { from: IPv6; fromPort: number; to: IPv6; port: number; data: Buffer }[] = [];

  udp6(address: IPv6, port: number): FakeSocket6 {
    const key = `${address}:${port}`;
    if (this.endpoints.has(key)) throw Object.assign(new Error(`fake [${address}]:${port} is already in use`), { code: 'EADDRINUSE' });
    const socket = new FakeSocket6(this, address, port);
    this.endpoints.set(key, socket);
    return socket;
  }

  /** @internal */
  deliver(from: FakeSocket6, to: IPv6, port: number, payload: Buffer): void {
    this.log.push({ from: from.address, fromPort: from.port, to, port, data: Buffer.from(payload) });
    this.endpoints.get(`${to}:${port}`)?.enqueue({ data: Buffer.from(payload), addr: from.address, port: from.port });
  }

  /** @internal */
  unbind(socket: FakeSocket6): void {
    this.endpoints.delete(`${socket.address}:${socket.port}`);
  }
}

export class FakeSocket6 implements DatagramSocket {
  readonly kind = 'udp' as const;
  readonly family = 6 as const;
  gro = false;
  closed = false;
  private readonly pending: Datagram6[] = [];
  private callback?: () => void;
  private scheduled = false;

  constructor(
    private readonly network: FakeNetwork6,
    readonly address: IPv6,
    readonly port: number,
  ) {}

  /** @internal */
  enqueue(d: Datagram6): void {
    this.pending.push(d);
    this.notify();
  }

  /** A datagram from anywhere (a test playing a peer or an attacker). */
  inject(data: Buffer, from: IPv6, fromPort = 4789): void {
    this.enqueue({ data: Buffer.from(data), addr: from, port: fromPort });
  }

  /** A GRO receive: datagrams of `segment` bytes in one buffer, from one sender. */
  injectGro(data: Buffer, segment: number, from: IPv6, fromPort = 4789): void {
    this.enqueue({ data: Buffer.from(data), addr: from, port: fromPort, segment });
  }

  recv(batch: PacketBatch): number {
    return this.read(batch, undefined);
  }

  recvGro(batch: PacketBatch, segSizes: Uint32Array): number {
    return this.read(batch, segSizes);
  }

  send(batch: PacketBatch): number {
    for (let i = 0; i < batch.count; i++) {
      const a = batch.addrs6;
      const to = ipv6FromWords(a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3]);
      this.network.deliver(this, to, batch.ports[i], batch.slab.subarray(batch.offsets[i], batch.offsets[i] + batch.lengths[i]));
    }
    return batch.count;
  }

  watch(onReadable: () => void): void {
    this.callback = onReadable;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.callback = undefined;
    this.network.unbind(this);
  }

  private read(batch: PacketBatch, segSizes: Uint32Array | undefined): number {
    let n = 0;
    while (n < batch.count && this.pending.length > 0) {
      const d = this.pending.shift()!;
      const capacity = batch.lengths[n];
      const len = Math.min(d.data.length, capacity);
      d.data.copy(batch.slab, batch.offsets[n], 0, len);
      batch.lengths[n] = d.data.length <= capacity ? len : 0;
      batch.addrs6.set(ipv6Words(d.addr), 4 * n);
      batch.addrs[n] = 0;
      batch.ports[n] = d.port;
      if (segSizes !== undefined) segSizes[n] = d.segment !== undefined && d.segment < batch.lengths[n] ? d.segment : 0;
      n++;
    }
    batch.count = n;
    if (this.pending.length > 0) this.notify();
    return n;
  }

  private notify(): void {
    if (this.callback === undefined || this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.callback?.();
    });
  }
}
