// A batched UDP socket (recvmmsg/sendmmsg) over the native addon: the VXLAN underlay endpoint.
import { formatIPv4, type IPv4 } from '../wire/address';
import type { PacketBatch } from './batch';
import { IP_PMTUDISC_DO, IP_PMTUDISC_DONT, explainSystemError, native, NativeFd, takeSendError } from './native';
import type { DatagramSocket, GsoSendResult } from './types';

export type { GsoSendResult } from './types';

/** ~7 MB socket buffers: what wireguard-go settled on (+29% throughput; FACTS.md). */
export const DEFAULT_SOCKET_BUFFER_BYTES = 7 << 20;

export interface UdpSocketOptions {
  address: IPv4;
  /** 0 picks a free port (see `port` afterwards). */
  port: number;
  recvBufferBytes?: number;
  sendBufferBytes?: number;
  /** UDP_GRO: receives may coalesce several datagrams of one sender into one buffer (read them with recvGro). */
  gro?: boolean;
  /** Outer DF: true sets it on every datagram, false clears it (see setDontFragment); undefined keeps Linux's default. */
  dontFragment?: boolean;
}

/** Limits of one udpSendGso call (the kernel's UDP_MAX_SEGMENTS; one IPv4 datagram's payload). */
export const GSO_MAX_SEGMENTS = 64;
export const GSO_MAX_BYTES = 65507;

/**
 * What sendGso did. 'sent': one GSO send. 'again': EAGAIN, nothing sent. 'fallback': the kernel refuses GSO here
 * (EIO/EINVAL), the segments went one by one: stop using GSO. 'split': this send only exceeded the route MTU
 * (EMSGSIZE), the segments went one by one: GSO stays usable. 'dropped': refused for this destination.
 */
const GSO_RESULTS: Record<number, GsoSendResult> = { 1: 'sent', 0: 'again', 2: 'fallback', 3: 'split', [-1]: 'dropped' };

export function validateBufferBytes(value: number | undefined, what: string): number {
  if (value === undefined) return DEFAULT_SOCKET_BUFFER_BYTES;
  if (!Number.isInteger(value) || value < 0 || value > 0x7fffffff) {
    throw new Error(`${what} must be an integer from 0 to 2147483647 bytes (0 keeps the kernel default), got ${value}`);
  }
  return value;
}

export function validateAddress(address: IPv4, what: string): void {
  if (!Number.isInteger(address) || address < 0 || address > 0xffffffff) {
    throw new Error(`${what} must be an IPv4 address as a u32, got ${address}`);
  }
}

export class UdpSocket implements DatagramSocket {
  readonly kind = 'udp' as const;
  readonly address: IPv4;
  /** The bound port (the kernel's choice when 0 was asked for). */
  readonly port: number;
  /** UDP_GRO is on: use recvGro, whose buffers may hold several datagrams. */
  readonly gro: boolean;
  private readonly handle: NativeFd;

  private constructor(address: IPv4, port: number, handle: NativeFd, gro: boolean) {
    this.address = address;
    this.port = port;
    this.handle = handle;
    this.gro = gro;
  }

  static open(options: UdpSocketOptions): UdpSocket {
    const { address, port } = options;
    validateAddress(address, 'UDP address');
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`UDP port must be 0 to 65535, got ${port}`);
    const recvBytes = validateBufferBytes(options.recvBufferBytes, 'UDP receive buffer');
    const sendBytes = validateBufferBytes(options.sendBufferBytes, 'UDP send buffer');
    const addon = native();
    let fd: number;
    try {
      fd = addon.udpOpen(address, port, recvBytes, sendBytes);
    } catch (error) {
      throw explainSystemError(error, (code) => {
        if (code === 'EADDRINUSE') {
          return `UDP port ${port} on ${formatIPv4(address)} is already in use (another vxtun agent, or a kernel vxlan device?)`;
        }
        if (code === 'EADDRNOTAVAIL') return `cannot bind UDP to ${formatIPv4(address)}: it is not an address of this host`;
        if (code === 'EACCES') return `binding UDP port ${port} needs root or CAP_NET_BIND_SERVICE`;
        return undefined;
      });
    }
    let boundPort = port;
    try {
      if (port === 0) boundPort = addon.udpLocalPort(fd);
      if (options.gro === true) addon.udpSetGro(fd, true);
      if (options.dontFragment !== undefined) addon.ipSetMtuDiscover(fd, options.dontFragment ? IP_PMTUDISC_DO : IP_PMTUDISC_DONT);
    } catch (error) {
      addon.close(fd);
      throw error;
    }
    const handle = new NativeFd(fd, `UDP socket ${formatIPv4(address)}:${boundPort}`);
    return new UdpSocket(address, boundPort, handle, options.gro === true);
  }

  /** The socket's fd (for diagnostics); throws once closed. */
  get fd(): number {
    return this.handle.fd;
  }

  recv(batch: PacketBatch): number {
    const b = batch;
    const count = native().udpRecv(this.handle.fd, b.slab, b.offsets, b.lengths, b.addrs, b.ports, b.count);
    b.count = count;
    return count;
  }

  takeSendError(): string | undefined {
    return takeSendError();
  }

  send(batch: PacketBatch): number {
    const b = batch;
    return native().udpSend(this.handle.fd, b.slab, b.offsets, b.lengths, b.addrs, b.ports, b.count);
  }

  /**
   * As recv, for a socket opened with `gro`: segSizes[i] is the segment size when buffer i holds several coalesced
   * datagrams of one sender (each segSizes[i] bytes but the last), else 0. Give slots of 64 KB; at most 64 per call.
   */
  recvGro(batch: PacketBatch, segSizes: Uint32Array): number {
    const b = batch;
    const count = native().udpRecvGro(this.handle.fd, b.slab, b.offsets, b.lengths, b.addrs, b.ports, segSizes, b.count);
    b.count = count;
    return count;
  }

  /**
   * Sends slab[off, off + len) as ceil(len / segmentSize) datagrams to addr:port in one system call (UDP_SEGMENT).
   * Limits: len 1..GSO_MAX_BYTES, at most GSO_MAX_SEGMENTS segments (RangeError otherwise).
   */
  sendGso(slab: Buffer, off: number, len: number, segmentSize: number, addr: IPv4, port: number): GsoSendResult {
    return GSO_RESULTS[native().udpSendGso(this.handle.fd, slab, off, len, segmentSize, addr, port)];
  }

  /**
   * The outer DF bit of every later send, GSO sends included. true: IP_PMTUDISC_DO, DF set, and a datagram above the
   * path MTU fails (counted as a send failure). false: IP_PMTUDISC_DONT, DF clear, and the kernel fragments what
   * exceeds the route MTU, as its own VXLAN device does by default (ip-link(8) `df unset`). One setsockopt.
   */
  setDontFragment(on: boolean): void {
    native().ipSetMtuDiscover(this.handle.fd, on ? IP_PMTUDISC_DO : IP_PMTUDISC_DONT);
  }

  /** The socket's IP_MTU_DISCOVER mode (0 DONT, 1 WANT: Linux's default, 2 DO; ip(7)), for diagnostics and tests. */
  get mtuDiscoverMode(): number {
    return native().ipGetMtuDiscover(this.handle.fd);
  }

  watch(onReadable: () => void): void {
    this.handle.watch(onReadable);
  }

  close(): void {
    this.handle.close();
  }
}
