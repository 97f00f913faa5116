// The I/O seams of the engine. Every call moves a batch; none allocates per packet. Real devices live beside these
// (tun.ts, udp.ts, raw.ts over the native addon); in-memory fakes (fake.ts) let the engine be tested without root.
import type { PacketBatch } from './batch';

/** Layer-3 TUN device (IFF_TUN | IFF_NO_PI): each packet is a bare IP packet. */
export interface TunDevice {
  readonly name: string;
  readonly mtu: number;
  /**
   * Reads up to batch.count packets (the caller prepared that many slots in offsets/lengths, lengths holding each
   * slot's capacity); sets batch.count and lengths to what was read and returns the count. Never blocks.
   */
  read(batch: PacketBatch): number;
  /** Writes batch.count packets; returns how many were accepted. */
  write(batch: PacketBatch): number;
  /** Calls `onReadable` from the event loop whenever packets may be waiting (level-triggered). */
  watch(onReadable: () => void): void;
  close(): void;
}

/**
 * A datagram endpoint: a UDP socket (addr/port of the peer) or a raw IPv4 socket for one protocol
 * (port unused; a receive includes the outer IPv4 header, a send does not: the kernel writes it).
 */
export interface DatagramSocket {
  readonly kind: 'udp' | 'raw';
  /** As TunDevice.read: up to batch.count datagrams into prepared slots; fills addrs/ports with each sender. */
  recv(batch: PacketBatch): number;
  /** Sends batch.count datagrams to (addrs[i], ports[i]); returns how many the kernel took. */
  send(batch: PacketBatch): number;
  watch(onReadable: () => void): void;
  close(): void;
}
