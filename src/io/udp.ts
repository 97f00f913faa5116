// A batched UDP socket (recvmmsg/sendmmsg) over the native addon: the VXLAN underlay endpoint, IPv4 or IPv6.
import { formatIPv4, type IPv4, parseIPv4 } from '../wire/address';
import { formatIPv6, type IPv6, ipv6Word, parseIPv6 } from '../wire/address6';
import type { PacketBatch } from './batch';
import { IP_PMTUDISC_DO, IP_PMTUDISC_DONT, explainSystemError, native, NativeFd, takeSendError } from './native';
import type { DatagramSocket, GsoSendResult } from './types';

export type { GsoSendResult } from './types';

/** ~7 MB socket buffers: what wireguard-go settled on (+29% throughput; FACTS.md). */
export const DEFAULT_SOCKET_BUFFER_BYTES = 7 << 20;

export interface UdpSocketOptions {
  /**
   * The local address: an IPv4 u32 (or IPv4 text) opens an AF_INET socket; an IPv6 bigint, or IPv6 text
   * ('2001:db8::1'), opens an AF_INET6 one (family 6: IPV6_V6ONLY, peers in PacketBatch.addrs6, DF on by default, see setDontFragment).
   */
  address: IPv4 | IPv6 | string;
  /** 0 picks a free port (see `port` afterwards). */
  port: number;
  recvBufferBytes?: number;
  sendBufferBytes?: number;
  /** UDP_GRO: receives may coalesce several datagrams of one sender into one buffer (read them with recvGro). */
  gro?: boolean;
  /**
   * Outer DF: true sets it on every datagram, false clears it (see setDontFragment). Undefined keeps the default:
   * Linux's (IP_PMTUDISC_WANT) for IPv4; for IPv6 no fragmentation at the source, as the kernel's vxlan device.
   */
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

/** The address of UdpSocketOptions as a u32 (IPv4) or a bigint (IPv6); throws a readable Error when it is neither. */
export function underlayAddress(address: IPv4 | IPv6 | string, what: string): IPv4 | IPv6 {
  if (typeof address === 'string') {
    try {
      return address.includes(':') ? parseIPv6(address) : parseIPv4(address);
    } catch (error) {
      throw new Error(`${what} ${JSON.stringify(address)} is not an IPv4 or IPv6 address (${(error as Error).message})`);
    }
  }
  if (typeof address === 'bigint') {
    if (address < 0n || address >= 1n << 128n) throw new Error(`${what} must be an IPv6 address as a 128-bit bigint, got ${address}`);
    return address;
  }
  validateAddress(address, what);
  return address;
}

/** '192.0.2.1:8472' or '[2001:db8::1]:8472'. */
export function formatEndpoint(address: IPv4 | IPv6, port: number): string {
  return typeof address === 'bigint' ? `[${formatIPv6(address)}]:${port}` : `${formatIPv4(address)}:${port}`;
}

export class UdpSocket implements DatagramSocket {
  readonly kind = 'udp' as const;
  /** 4: peers in PacketBatch.addrs (u32); 6: peers in PacketBatch.addrs6 (four words each), as the bound address. */
  readonly family: 4 | 6;
  readonly address: IPv4 | IPv6;
  /** The bound port (the kernel's choice when 0 was asked for). */
  readonly port: number;
  /** UDP_GRO is on: use recvGro, whose buffers may hold several datagrams. */
  readonly gro: boolean;
  private readonly handle: NativeFd;

  private constructor(address: IPv4 | IPv6, port: number, handle: NativeFd, gro: boolean) {
    this.family = typeof address === 'bigint' ? 6 : 4;
    this.address = address;
    this.port = port;
    this.handle = handle;
    this.gro = gro;
  }

  /**
   * Opens and binds the socket (no SO_REUSEADDR: a busy port fails). Errors: EADDRINUSE, EADDRNOTAVAIL (not an address
   * of this host; for IPv6 also a still-tentative address: DAD), EACCES, explained in the message; code/errno/syscall kept.
   */
  static open(options: UdpSocketOptions): UdpSocket {
    const { port } = options;
    const address = underlayAddress(options.address, 'UDP address');
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`UDP port must be 0 to 65535, got ${port}`);
    const recvBytes = validateBufferBytes(options.recvBufferBytes, 'UDP receive buffer');
    const sendBytes = validateBufferBytes(options.sendBufferBytes, 'UDP send buffer');
    const addon = native();
    const text = typeof address === 'bigint' ? formatIPv6(address) : formatIPv4(address);
    let fd: number;
    try {
      fd = typeof address === 'bigint'
        ? addon.udp6Open(ipv6Word(address, 0), ipv6Word(address, 1), ipv6Word(address, 2), ipv6Word(address, 3), port, recvBytes, sendBytes)
        : addon.udpOpen(address, port, recvBytes, sendBytes);
    } catch (error) {
      throw explainSystemError(error, (code) => {
        if (code === 'EADDRINUSE') {
          return `UDP port ${port} on ${text} is already in use (another vxtun agent, or a kernel vxlan device?)`;
        }
        if (code === 'EADDRNOTAVAIL') {
          return typeof address === 'bigint'
            ? `cannot bind UDP to ${text}: it is not an address of this host, or still tentative (duplicate address detection)`
            : `cannot bind UDP to ${text}: it is not an address of this host`;
        }
        if (code === 'EACCES') return `binding UDP port ${port} needs root or CAP_NET_BIND_SERVICE`;
        return undefined;
      });
    }
    let boundPort = port;
    try {
      if (port === 0) boundPort = addon.udpLocalPort(fd);
      if (options.gro === true) addon.udpSetGro(fd, true);
      if (options.dontFragment !== undefined) {
        if (typeof address === 'bigint') addon.ip6SetDontFragment(fd, options.dontFragment);
        else addon.ipSetMtuDiscover(fd, options.dontFragment ? IP_PMTUDISC_DO : IP_PMTUDISC_DONT);
      }
    } catch (error) {
      addon.close(fd);
      throw error;
    }
    const handle = new NativeFd(fd, `UDP socket ${formatEndpoint(address, boundPort)}`);
    return new UdpSocket(address, boundPort, handle, options.gro === true);
  }

  /** The socket's fd (for diagnostics); throws once closed. */
  get fd(): number {
    return this.handle.fd;
  }

  recv(batch: PacketBatch): number {
    const b = batch;
    const count = this.family === 6
      ? native().udp6Recv(this.handle.fd, b.slab, b.offsets, b.lengths, b.addrs6, b.ports, b.count)
      : native().udpRecv(this.handle.fd, b.slab, b.offsets, b.lengths, b.addrs, b.ports, b.count);
    b.count = count;
    return count;
  }

  takeSendError(): string | undefined {
    return takeSendError();
  }

  /** Sends to (addrs[i], ports[i]), or (addrs6[4i..4i+3], ports[i]) on a family-6 socket. */
  send(batch: PacketBatch): number {
    const b = batch;
    return this.family === 6
      ? native().udp6Send(this.handle.fd, b.slab, b.offsets, b.lengths, b.addrs6, b.ports, b.count)
      : native().udpSend(this.handle.fd, b.slab, b.offsets, b.lengths, b.addrs, b.ports, b.count);
  }

  /**
   * As recv, for a socket opened with `gro`: segSizes[i] is the segment size when buffer i holds several coalesced
   * datagrams of one sender (each segSizes[i] bytes but the last), else 0. Give slots of 64 KB; at most 64 per call.
   */
  recvGro(batch: PacketBatch, segSizes: Uint32Array): number {
    const b = batch;
    const count = this.family === 6
      ? native().udp6RecvGro(this.handle.fd, b.slab, b.offsets, b.lengths, b.addrs6, b.ports, segSizes, b.count)
      : native().udpRecvGro(this.handle.fd, b.slab, b.offsets, b.lengths, b.addrs, b.ports, segSizes, b.count);
    b.count = count;
    return count;
  }

  /**
   * Sends slab[off, off + len) as ceil(len / segmentSize) datagrams to addr:port in one system call (UDP_SEGMENT).
   * Limits: len 1..GSO_MAX_BYTES, at most GSO_MAX_SEGMENTS segments (RangeError otherwise).
   */
  sendGso(slab: Buffer, off: number, len: number, segmentSize: number, addr: IPv4, port: number): GsoSendResult {
    if (this.family === 6) throw new TypeError('sendGso on an IPv6 socket: use sendGso6');
    return GSO_RESULTS[native().udpSendGso(this.handle.fd, slab, off, len, segmentSize, addr, port)];
  }

  /**
   * sendGso for a family-6 socket, to [w0:w1:w2:w3]:port (the address as four 32-bit words, most significant first,
   * so that no bigint is made per send; ipv6Words gives them). Same limits and results; TypeError on an IPv4 socket.
   */
  sendGso6(
    slab: Buffer, off: number, len: number, segmentSize: number, w0: number, w1: number, w2: number, w3: number, port: number,
  ): GsoSendResult {
    if (this.family !== 6) throw new TypeError('sendGso6 on an IPv4 socket: use sendGso');
    return GSO_RESULTS[native().udp6SendGso(this.handle.fd, slab, off, len, segmentSize, w0, w1, w2, w3, port)];
  }

  /**
   * The outer DF bit of every later send, GSO sends included. true: IP_PMTUDISC_DO, DF set, and a datagram above the
   * path MTU fails (counted as a send failure). false: IP_PMTUDISC_DONT, DF clear, and the kernel fragments what
   * exceeds the route MTU, as its own VXLAN device does by default (ip-link(8) `df unset`). One setsockopt.
   */
  setDontFragment(on: boolean): void {
    if (this.family === 6) native().ip6SetDontFragment(this.handle.fd, on);
    else native().ipSetMtuDiscover(this.handle.fd, on ? IP_PMTUDISC_DO : IP_PMTUDISC_DONT);
  }

  /**
   * The socket's IP_MTU_DISCOVER mode (0 DONT, 1 WANT: Linux's default, 2 DO; ip(7)), or on an IPv6 socket its
   * IPV6_MTU_DISCOVER mode (same numbers, ipv6(7)), for diagnostics and tests.
   */
  get mtuDiscoverMode(): number {
    return this.family === 6 ? native().ip6GetMtuDiscover(this.handle.fd)[0] : native().ipGetMtuDiscover(this.handle.fd);
  }

  /** IPv6 sockets: IPV6_DONTFRAG is set (sends above the path MTU fail rather than fragment). false on IPv4. */
  get dontFragment6(): boolean {
    return this.family === 6 && native().ip6GetMtuDiscover(this.handle.fd)[1] === 1;
  }

  watch(onReadable: () => void): void {
    this.handle.watch(onReadable);
  }

  close(): void {
    this.handle.close();
  }
}
