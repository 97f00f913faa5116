// A batched UDP socket (recvmmsg/sendmmsg) over the native addon: the VXLAN underlay endpoint.
import { formatIPv4, type IPv4 } from '../wire/address';
import type { PacketBatch } from './batch';
import { explainSystemError, native, NativeFd } from './native';
import type { DatagramSocket } from './types';

/** ~7 MB socket buffers: what wireguard-go settled on (+29% throughput; FACTS.md). */
export const DEFAULT_SOCKET_BUFFER_BYTES = 7 << 20;

export interface UdpSocketOptions {
  address: IPv4;
  /** 0 picks a free port (see `port` afterwards). */
  port: number;
  recvBufferBytes?: number;
  sendBufferBytes?: number;
}

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
  private readonly handle: NativeFd;

  private constructor(address: IPv4, port: number, handle: NativeFd) {
    this.address = address;
    this.port = port;
    this.handle = handle;
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
    } catch (error) {
      addon.close(fd);
      throw error;
    }
    return new UdpSocket(address, boundPort, new NativeFd(fd, `UDP socket ${formatIPv4(address)}:${boundPort}`));
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

  send(batch: PacketBatch): number {
    const b = batch;
    return native().udpSend(this.handle.fd, b.slab, b.offsets, b.lengths, b.addrs, b.ports, b.count);
  }

  watch(onReadable: () => void): void {
    this.handle.watch(onReadable);
  }

  close(): void {
    this.handle.close();
  }
}
