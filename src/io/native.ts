// The one loader of the native addon (native/*.cc): typed exports, system errors, and the fd + watcher pair that
// every device class holds. Loading is lazy, so code that only uses the in-memory fakes runs without a build.
import { constants as osConstants } from 'node:os';
import * as path from 'path';

/** A system call failure, shaped like Node's own: `code` 'EADDRINUSE', positive `errno`, `syscall` 'bind'. */
export type SystemError = Error & { code: string; errno: number; syscall: string };

export function isSystemError(error: unknown, code?: string): error is SystemError {
  if (!(error instanceof Error)) return false;
  const fields = error as Partial<SystemError>;
  if (typeof fields.code !== 'string' || typeof fields.errno !== 'number' || typeof fields.syscall !== 'string') return false;
  return code === undefined || fields.code === code;
}

/**
 * Wraps a system error in one whose message says what to do, keeping the original as `cause` and its
 * code/errno/syscall. `explain` returns undefined for codes it has nothing to add to; those errors pass unchanged.
 */
export function explainSystemError(error: unknown, explain: (code: string) => string | undefined): unknown {
  if (!isSystemError(error)) return error;
  const message = explain(error.code);
  if (message === undefined) return error;
  const explained = new Error(message, { cause: error }) as SystemError;
  explained.code = error.code;
  explained.errno = error.errno;
  explained.syscall = error.syscall;
  return explained;
}

/** IP_MTU_DISCOVER values from <linux/in.h> that vxtun sets (ip(7)). */
export const IP_PMTUDISC_DONT = 0;
export const IP_PMTUDISC_WANT = 1;
export const IP_PMTUDISC_DO = 2;
export type PmtuDiscoverMode = typeof IP_PMTUDISC_DONT | typeof IP_PMTUDISC_WANT | typeof IP_PMTUDISC_DO;

export interface NativeFdWatcher {
  start(): void;
  stop(): void;
  /** Stops polling at once (the fd may be closed right after) and releases the handle. */
  close(): void;
  ref(): void;
  unref(): void;
}

/** Every export of build/Release/vxtun.node. IPv4 addresses are u32 in host order; all calls are non-blocking. */
export interface NativeAddon {
  /**
   * With vnetHdr: IFF_VNET_HDR, a 10-byte struct virtio_net_hdr before every packet read and written, and the offloads
   * TUN_F_CSUM | TUN_F_TSO4 (reads may be TCP super-packets up to 64 KB, or carry a partial checksum).
   * With vnetHdr and probeUso: `uso` says whether the kernel knows TUN_F_USO4/USO6 (6.2+; TUNSETOFFLOAD answers
   * EINVAL otherwise), and so takes VIRTIO_NET_HDR_GSO_UDP_L4 writes. The device keeps CSUM | TSO4 either way.
   */
  tunOpen(name: string, vnetHdr?: boolean, probeUso?: boolean): { fd: number; name: string; uso: boolean };
  tunConfigure(name: string, mtu: number, address: number, prefixLength: number, up: boolean): void;
  /**
   * Up to `max` packets into the slots (lengths in: capacities; out: sizes). With `ring` (uringOpen), in one
   * io_uring_enter, and filled slots first: an offset/length pair may be swapped with a later unfilled one.
   */
  tunRead(fd: number, slab: Buffer, offsets: Uint32Array, lengths: Uint32Array, max: number, ring?: number): number;
  /** `count` packets, one write each (with `ring`: all in one io_uring_enter); returns how many were accepted. */
  tunWrite(fd: number, slab: Buffer, offsets: Uint32Array, lengths: Uint32Array, count: number, ring?: number): number;
  /**
   * An io_uring of `entries` submission slots (1-4096) for one TUN fd, used from this thread only; returns its id.
   * A system error when the kernel refuses (EPERM: kernel.io_uring_disabled; ENOSYS, also when the addon was built
   * without liburing: see uringAvailable).
   */
  uringOpen(entries: number): number;
  /** Frees a ring; a closed id is ignored. */
  uringClose(ring: number): void;
  /**
   * A connected, non-blocking AF_UNIX SOCK_SEQPACKET pair: one whole message per read or write, as a TUN fd, so tests
   * without root can run tunRead / tunWrite / tunWriteCoalesced on it. Close both with close().
   */
  seqpacketPair(): [number, number];
  /** The addon was built with liburing (native/uring.cc). */
  readonly uringAvailable: boolean;
  udpOpen(address: number, port: number, recvBufferBytes: number, sendBufferBytes: number): number;
  udpLocalPort(fd: number): number;
  udpRecv(fd: number, slab: Buffer, offsets: Uint32Array, lengths: Uint32Array, addrs: Uint32Array, ports: Uint16Array, max: number): number;
  udpSend(fd: number, slab: Buffer, offsets: Uint32Array, lengths: Uint32Array, addrs: Uint32Array, ports: Uint16Array, count: number): number;
  rawOpen(protocol: number, bindAddress: number, recvBufferBytes: number, sendBufferBytes: number): number;
  rawRecv(fd: number, slab: Buffer, offsets: Uint32Array, lengths: Uint32Array, addrs: Uint32Array, max: number): number;
  rawSend(fd: number, slab: Buffer, offsets: Uint32Array, lengths: Uint32Array, addrs: Uint32Array, count: number): number;
  /**
   * A TCP super-packet's segments in one sendmmsg (native/socket.cc): segments taken, or -1 when it cannot be cut.
   * `port` 0 for raw sockets; on a UDP socket's fd the segments go out as UDP payloads (unit tests, no root needed).
   */
  rawSendSegments(
    fd: number, slab: Buffer, pktOff: number, pktLen: number, hdrLen: number, gsoSize: number, csumStart: number,
    addr: number, port: number, scratch: Buffer, segLengths: Uint32Array,
  ): number;
  close(fd: number): void;
  /**
   * The errno of the most recent udpSend/rawSend/udpSendGso message that did not go out (skipped for its destination,
   * or the socket full: EAGAIN) since the last call, or 0; clears it. Called only when a send came up short.
   */
  takeSendErrno(): number;
  /**
   * setsockopt(IP_MTU_DISCOVER) on a UDP or raw IPv4 socket: 0 IP_PMTUDISC_DONT (outer DF clear; datagrams above the
   * route MTU are fragmented by the kernel), 1 IP_PMTUDISC_WANT (Linux's socket default: DF set when the datagram
   * fits the route MTU), 2 IP_PMTUDISC_DO (DF always set; above the path MTU the send fails with EMSGSIZE). Every
   * later send follows it, UDP GSO sends included. RangeError for another mode; a system error otherwise (ip(7)).
   */
  ipSetMtuDiscover(fd: number, mode: PmtuDiscoverMode): void;
  /** getsockopt(IP_MTU_DISCOVER): the socket's current mode (0-5, ip(7)). */
  ipGetMtuDiscover(fd: number): number;
  /**
   * Splits the IPv4/TCP super-packet slab[pktOff, +pktLen) into segments of gsoSize payload bytes, written one after
   * the other at out[outOff...], each = prefix[prefixOff, +prefixLen) + IPv4 header (length, ID + i, checksum) + TCP
   * header (seq advanced; FIN/PSH on the last only, CWR on the first only; checksum computed) + payload. hdrLen (the
   * virtio hdr_len) is only checked to be >= the real header length and <= pktLen: the headers' own lengths are
   * used. csumStart must equal the IPv4 header length. Fills segLengths[i] (prefix included); returns the count, or
   * -1 when the packet cannot be segmented (not IPv4/TCP, lengths inconsistent, out or segLengths too small).
   * RangeError for regions outside their buffers or an output overlapping the packet.
   */
  tcpSegment(
    slab: Buffer, pktOff: number, pktLen: number, hdrLen: number, gsoSize: number, csumStart: number,
    out: Buffer, outOff: number, prefix: Buffer, prefixOff: number, prefixLen: number, segLengths: Uint32Array,
  ): number;
  /** Finishes a VIRTIO_NET_HDR_F_NEEDS_CSUM checksum in place: sums slab[off + csumStart, off + len) into the field. */
  completeChecksum(slab: Buffer, off: number, len: number, csumStart: number, csumOffset: number): void;
  /**
   * One sendmsg with UDP_SEGMENT: slab[off, +len) leaves as ceil(len / segmentSize) datagrams to addr:port.
   * Limits (RangeError): 1 <= len <= 65507, at most 64 segments. Returns 1 sent, 0 EAGAIN (nothing sent),
   * 2 GSO refused by the kernel (EIO: the route's device cannot checksum; EINVAL) and the segments were sent one by
   * one instead: stop using GSO, 3 this send refused (EMSGSIZE: segment + headers above the route MTU) and sent one by
   * one (IP may fragment): GSO stays usable, -1 refused for this destination (unreachable, ENOBUFS, EPERM...): a drop.
   */
  udpSendGso(fd: number, slab: Buffer, off: number, len: number, segmentSize: number, addr: number, port: number): -1 | 0 | 1 | 2 | 3;
  udpSetGro(fd: number, on: boolean): void;
  /**
   * As udpRecv (at most 64 messages per call), and segSizes[i] = the segment size when the kernel coalesced several
   * datagrams of one sender into buffer i (all segSizes[i] long but the last), else 0. Slots should be 64 KB.
   */
  udpRecvGro(
    fd: number, slab: Buffer, offsets: Uint32Array, lengths: Uint32Array, addrs: Uint32Array, ports: Uint16Array,
    segSizes: Uint32Array, max: number,
  ): number;
  /**
   * For a TUN opened with vnetHdr: packet i is a bare IPv4 packet at slab[offsets[i], +lengths[i]) with 10 bytes of
   * headroom before it (overwritten). Adjacent TCP segments of one flow, and with flags & COALESCE_UDP adjacent UDP
   * datagrams of one flow (at most 64, all the size of the first but the last), are written as one GSO super-packet:
   * the first packet's headers are rewritten in place and the others' payloads gathered after it (writev), nothing
   * copied. The rest go alone with a zeroed virtio header. `scratch` is ignored (the copying version needed it).
   * With `ring`, every write of the batch goes in one io_uring_enter. Returns the input packets accepted.
   */
  tunWriteCoalesced(
    fd: number, slab: Buffer, offsets: Uint32Array, lengths: Uint32Array, count: number, scratch?: Buffer, flags?: number, ring?: number,
  ): number;
  FdWatcher: new (fd: number, onReadable: () => void) => NativeFdWatcher;
  /**
   * flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB): true when taken, false when another open file description
   * holds it (EWOULDBLOCK); other failures throw a system error. The kernel releases it when the description closes.
   */
  flockTry(fd: number, exclusive: boolean): boolean;
  /** flock(fd, LOCK_UN). */
  flockRelease(fd: number): void;
  /**
   * An AF_INET6 UDP socket bound to [w0:w1:w2:w3]:port (four 32-bit words, most significant first), with IPV6_V6ONLY,
   * and IPV6_MTU_DISCOVER = IPV6_PMTUDISC_DO + IPV6_DONTFRAG: above the path MTU a send fails (EMSGSIZE) rather than
   * being fragmented at the source, as the kernel's vxlan device over IPv6. Buffers as udpOpen.
   */
  udp6Open(w0: number, w1: number, w2: number, w3: number, port: number, recvBufferBytes: number, sendBufferBytes: number): number;
  /** As udpRecv; peer i in addrs6[4i..4i+3] (4 words a packet, most significant first). */
  udp6Recv(fd: number, slab: Buffer, offsets: Uint32Array, lengths: Uint32Array, addrs6: Uint32Array, ports: Uint16Array, max: number): number;
  /** As udpSend; destination i in addrs6[4i..4i+3]. */
  udp6Send(fd: number, slab: Buffer, offsets: Uint32Array, lengths: Uint32Array, addrs6: Uint32Array, ports: Uint16Array, count: number): number;
  /** As udpSendGso, to [w0:w1:w2:w3]:port. */
  udp6SendGso(
    fd: number, slab: Buffer, off: number, len: number, segmentSize: number, w0: number, w1: number, w2: number, w3: number,
    port: number,
  ): -1 | 0 | 1 | 2 | 3;
  /** As udpRecvGro, peers in addrs6 (UDP_GRO is switched on with udpSetGro: the option is the same for both families). */
  udp6RecvGro(
    fd: number, slab: Buffer, offsets: Uint32Array, lengths: Uint32Array, addrs6: Uint32Array, ports: Uint16Array,
    segSizes: Uint32Array, max: number,
  ): number;
  /**
   * On: IPV6_PMTUDISC_DO + IPV6_DONTFRAG (udp6Open's default; above the path MTU a send fails with EMSGSIZE). Off:
   * IPV6_PMTUDISC_DONT without DONTFRAG: the kernel fragments at the source (RFC 8200 section 5). ipv6(7).
   */
  ip6SetDontFragment(fd: number, on: boolean): void;
  /** [IPV6_MTU_DISCOVER mode (0-5), IPV6_DONTFRAG (0 or 1)] of an IPv6 socket. */
  ip6GetMtuDiscover(fd: number): [number, number];
}

const FUNCTIONS: ReadonlyArray<keyof NativeAddon> = [
  'tunOpen', 'tunConfigure', 'tunRead', 'tunWrite', 'udpOpen', 'udpLocalPort', 'udpRecv', 'udpSend',
  'rawOpen', 'rawRecv', 'rawSend', 'rawSendSegments', 'close', 'takeSendErrno', 'tcpSegment', 'completeChecksum', 'udpSendGso', 'udpSetGro', 'udpRecvGro',
  'tunWriteCoalesced', 'FdWatcher', 'ipSetMtuDiscover', 'ipGetMtuDiscover', 'flockTry', 'flockRelease', 'uringOpen', 'uringClose', 'seqpacketPair',
  'udp6Open', 'udp6Recv', 'udp6Send', 'udp6SendGso', 'udp6RecvGro', 'ip6SetDontFragment', 'ip6GetMtuDiscover',
];

/** tunWriteCoalesced flag: coalesce UDP datagrams too (only where tunOpen reported `uso`). */
export const COALESCE_UDP = 1;

// This file is src/io/native.ts or dist/io/native.js: the package root is two levels up in both.
export const ADDON_PATH = path.join(__dirname, '..', '..', 'build', 'Release', 'vxtun.node');

let loaded: NativeAddon | undefined;

export function native(): NativeAddon {
  if (loaded !== undefined) return loaded;
  // Not named `exports`: compiled to CommonJS, that name would shadow the module's own exports object.
  let addon: Record<string, unknown>;
  try {
    addon = require(ADDON_PATH) as Record<string, unknown>;
  } catch (error) {
    const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
    throw new Error(`vxtun native addon could not be loaded (${reason}): run \`npm install\` to build it (needs g++ and make)`, { cause: error });
  }
  const missing = FUNCTIONS.filter((name) => typeof addon[name] !== 'function');
  if (missing.length > 0) {
    throw new Error(`vxtun native addon at ${ADDON_PATH} is out of date (no ${missing.join(', ')}): run \`npm install\``);
  }
  loaded = addon as unknown as NativeAddon;
  return loaded;
}

/**
 * An fd owned by a device or socket, with its optional watcher. close() stops the watcher before closing the fd
 * (an fd number is reused at once, and must not stay in epoll), and is idempotent.
 */
export class NativeFd {
  private fdValue: number;
  private watcher: NativeFdWatcher | undefined;

  constructor(fd: number, private readonly label: string) {
    this.fdValue = fd;
  }

  get closed(): boolean {
    return this.fdValue < 0;
  }

  /** The fd, or an error naming the closed device: a closed fd's number may already belong to someone else. */
  get fd(): number {
    if (this.fdValue < 0) throw new Error(`${this.label} is closed`);
    return this.fdValue;
  }

  /** Calls onReadable whenever the fd is readable; replaces a previous watch. */
  watch(onReadable: () => void): void {
    const fd = this.fd;
    this.watcher?.close();
    this.watcher = undefined;
    const watcher = new (native().FdWatcher)(fd, onReadable);
    watcher.start();
    this.watcher = watcher;
  }

  close(): void {
    if (this.fdValue < 0) return;
    this.watcher?.close();
    this.watcher = undefined;
    const fd = this.fdValue;
    this.fdValue = -1;
    native().close(fd);
  }
}

const errnoNames = new Map<number, string>();

/**
 * The code ('EPERM', 'ENOBUFS'...) of the most recent send that came up short since the last call (one per process:
 * call it right after the short send), or undefined when none was recorded.
 */
export function takeSendError(): string | undefined {
  const errno = native().takeSendErrno();
  if (errno === 0) return undefined;
  if (errnoNames.size === 0) for (const [name, value] of Object.entries(osConstants.errno)) if (!errnoNames.has(value)) errnoNames.set(value, name);
  return errnoNames.get(errno) ?? `errno-${errno}`;
}
