// The I/O seams of the engine. Every call moves a batch; none allocates per packet. Real devices live beside these
// (tun.ts, udp.ts, raw.ts over the native addon); in-memory fakes (fake.ts) let the engine be tested without root.
import type { PacketBatch } from './batch';

/** What a GSO send did (see UdpSocket.sendGso). */
export type GsoSendResult = 'sent' | 'again' | 'fallback' | 'split' | 'dropped';

/** Layer-3 TUN device (IFF_TUN | IFF_NO_PI): each packet is a bare IP packet. */
export interface TunDevice {
  readonly name: string;
  readonly mtu: number;
  /**
   * Reads up to batch.count packets (the caller prepared that many slots in offsets/lengths, lengths holding each
   * slot's capacity); sets batch.count and lengths to what was read and returns the count. Never blocks.
   * A length above the slot's capacity means the packet did not fit (capacity + 1 or its full length, by kernel
   * version; only the capacity was stored): drop it. Throws a system error (code, errno, syscall) when the device fails: EBADFD / EIO once it is deleted.
   */
  read(batch: PacketBatch): number;
  /** Writes batch.count packets; returns how many were accepted. */
  write(batch: PacketBatch): number;
  /** Calls `onReadable` from the event loop whenever packets may be waiting (level-triggered). */
  watch(onReadable: () => void): void;
  close(): void;
  /**
   * Opened with IFF_VNET_HDR and TSO: every read starts with a 10-byte virtio_net_hdr and may be a TCP super-packet;
   * writes go through writeCoalesced.
   */
  readonly offload: boolean;
  /** Offload devices: writes IPv4 packets (10 bytes of headroom each), adjacent TCP segments coalesced into one. */
  writeCoalesced?(batch: PacketBatch, scratch: Buffer): number;
}

/**
 * A datagram endpoint: a UDP socket (addr/port of the peer) or a raw IPv4 socket for one protocol
 * (port unused; a receive includes the outer IPv4 header, a send does not: the kernel writes it).
 */
export interface DatagramSocket {
  readonly kind: 'udp' | 'raw';
  /** Underlay address family (issue 12): 6 reads and writes peers in PacketBatch.addrs6. Absent means 4. */
  readonly family?: 4 | 6;
  /** As TunDevice.read: up to batch.count datagrams into prepared slots; fills addrs/ports with each sender. */
  recv(batch: PacketBatch): number;
  /** Sends batch.count datagrams to (addrs[i], ports[i]); returns how many the kernel took. */
  send(batch: PacketBatch): number;
  /** Why the latest send came up short ('EPERM', 'ENOBUFS', 'EAGAIN'...), once: undefined when unknown or already told. */
  takeSendError?(): string | undefined;
  watch(onReadable: () => void): void;
  close(): void;
  /** UDP_GRO is on: receive with recvGro, whose buffers may hold several datagrams of one sender. */
  readonly gro?: boolean;
  recvGro?(batch: PacketBatch, segSizes: Uint32Array): number;
  /** UDP GSO: one system call sends buf[off, off + len) as datagrams of segmentSize bytes (the last may be shorter). */
  sendGso?(buf: Buffer, off: number, len: number, segmentSize: number, addr: number, port: number): GsoSendResult;
  /** The outer DF bit of every later send (IP_MTU_DISCOVER DO / DONT); absent on sockets that cannot choose it. */
  setDontFragment?(on: boolean): void;
}
