// A batched raw IPv4 socket for one protocol (4 = IP-in-IP). A receive includes the outer IPv4 header; on send
// the kernel writes it (no IP_HDRINCL), so a batch carries only the inner packets and their destinations.
import { formatIPv4, type IPv4 } from '../wire/address';
import type { PacketBatch } from './batch';
import { IP_PMTUDISC_DO, IP_PMTUDISC_DONT, explainSystemError, native, NativeFd, takeSendError } from './native';
import type { DatagramSocket } from './types';
import { validateAddress, validateBufferBytes } from './udp';

export interface RawSocketOptions {
  /** IP protocol number, 1-255 (4 = IP-in-IP). */
  protocol: number;
  /** Local address to bind: only packets to it are received, and it is the source of what is sent. 0 = any. */
  address: IPv4;
  recvBufferBytes?: number;
  sendBufferBytes?: number;
  /** Outer DF: true sets it on every packet, false clears it (see setDontFragment); undefined keeps Linux's default. */
  dontFragment?: boolean;
}

/** Most segments one sendSegments call makes (native kMaxRawSegments: a 64 KB super-packet at MSS 536 makes 123). */
export const SEGMENTS_MAX = 128;
/** The largest IPv4 + TCP headers a segment repeats (60 + 60), once per segment. */
const SEGMENT_HEADERS_MAX = 120;

export class RawSocket implements DatagramSocket {
  readonly kind = 'raw' as const;
  readonly protocol: number;
  readonly address: IPv4;
  private readonly handle: NativeFd;
  /** Where sendSegments writes each segment's headers (the payloads are sent from the super-packet in place). */
  private readonly segmentHeaders = Buffer.alloc(SEGMENTS_MAX * SEGMENT_HEADERS_MAX);

  private constructor(protocol: number, address: IPv4, fd: number) {
    this.protocol = protocol;
    this.address = address;
    this.handle = new NativeFd(fd, `raw socket (protocol ${protocol}) on ${formatIPv4(address)}`);
  }

  static open(options: RawSocketOptions): RawSocket {
    const { protocol, address } = options;
    if (!Number.isInteger(protocol) || protocol < 1 || protocol > 255) {
      throw new Error(`raw socket protocol must be 1 to 255, got ${protocol}`);
    }
    validateAddress(address, 'raw socket address');
    const recvBytes = validateBufferBytes(options.recvBufferBytes, 'raw socket receive buffer');
    const sendBytes = validateBufferBytes(options.sendBufferBytes, 'raw socket send buffer');
    let fd: number;
    try {
      fd = native().rawOpen(protocol, address, recvBytes, sendBytes);
    } catch (error) {
      throw explainSystemError(error, (code) => {
        if (code === 'EPERM' || code === 'EACCES') return 'raw IP sockets need root or CAP_NET_RAW';
        if (code === 'EADDRNOTAVAIL') return `cannot bind a raw socket to ${formatIPv4(address)}: it is not an address of this host`;
        return undefined;
      });
    }
    if (options.dontFragment !== undefined) {
      try {
        native().ipSetMtuDiscover(fd, options.dontFragment ? IP_PMTUDISC_DO : IP_PMTUDISC_DONT);
      } catch (error) {
        native().close(fd);
        throw error;
      }
    }
    return new RawSocket(protocol, address, fd);
  }

  /** The socket's fd (for diagnostics); throws once closed. */
  get fd(): number {
    return this.handle.fd;
  }

  /** Fills addrs with each sender; ports are left untouched. Each datagram starts with its outer IPv4 header. */
  recv(batch: PacketBatch): number {
    const b = batch;
    const count = native().rawRecv(this.handle.fd, b.slab, b.offsets, b.lengths, b.addrs, b.count);
    b.count = count;
    return count;
  }

  /** Sends each packet to addrs[i]; the kernel prepends the outer IPv4 header with this socket's protocol. */
  takeSendError(): string | undefined {
    return takeSendError();
  }

  send(batch: PacketBatch): number {
    const b = batch;
    return native().rawSend(this.handle.fd, b.slab, b.offsets, b.lengths, b.addrs, b.count);
  }

  /** See DatagramSocket.sendSegments: one native call, one sendmmsg; the kernel writes each outer header. */
  sendSegments(slab: Buffer, pktOff: number, pktLen: number, hdrLen: number, gsoSize: number, csumStart: number, addr: IPv4, segLengths: Uint32Array): number {
    return native().rawSendSegments(this.handle.fd, slab, pktOff, pktLen, hdrLen, gsoSize, csumStart, addr, 0, this.segmentHeaders, segLengths);
  }

  /**
   * The outer DF bit the kernel writes on every later send: true IP_PMTUDISC_DO (DF set; above the path MTU the send
   * fails), false IP_PMTUDISC_DONT (DF clear; the kernel fragments what exceeds the route MTU). One setsockopt.
   */
  setDontFragment(on: boolean): void {
    native().ipSetMtuDiscover(this.handle.fd, on ? IP_PMTUDISC_DO : IP_PMTUDISC_DONT);
  }

  /** The socket's IP_MTU_DISCOVER mode (0 DONT, 1 WANT: Linux's default, 2 DO; ip(7)). */
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
