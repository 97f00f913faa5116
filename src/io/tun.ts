// A real TUN device (IFF_TUN | IFF_NO_PI) over the native addon: bare IPv4 packets in and out, in batches, by a
// system call per packet or a batch per io_uring_enter (TunOptions.io).
// With `offload`, every packet read or written starts with a 10-byte virtio_net_hdr (fields below) and the kernel
// may hand over TCP super-packets (TSO) and partial checksums (see native.ts tcpSegment / completeChecksum).
import type { IPv4 } from '../wire/address';
import type { PacketBatch } from './batch';
import { COALESCE_UDP, explainSystemError, isSystemError, native, NativeFd } from './native';
import type { TunDevice, TunIoMode } from './types';
import { MAX_VIRTIO_NET_PACKET_LEN } from '../wire/virtio-net';

export interface TunOptions {
  /** Interface name: 1-15 characters of [A-Za-z0-9_.-]. Created if missing, attached if it is a free TUN. */
  name: string;
  mtu: number;
  /** Address given to the device (host order); none when omitted. */
  address?: IPv4;
  /** Prefix of `address`; 32 when omitted. */
  prefixLength?: number;
  /** IFF_VNET_HDR with TSO4 + CSUM offloads: reads and writes carry a virtio_net_hdr (VIRTIO_NET_HDR_LEN bytes, src/wire/virtio-net.ts). */
  offload?: boolean;
  /** `readv` (default): a system call per packet; `uring`: a batch per io_uring_enter, falling back to readv (see ioFallback). */
  io?: TunIoMode;
  /**
   * Offload devices: write consecutive UDP datagrams of one flow as one UDP GSO super-packet where the kernel takes
   * them (TUN_F_USO4, Linux 6.2+; probed at open, off when refused). Default false.
   */
  uso?: boolean;
}

/** `vxtun agent --tun-io` default: the mode the bench measured faster (see the README's figures). */
export const DEFAULT_TUN_IO: TunIoMode = 'readv';
/** `vxtun agent --tun-uso` default: whether UDP GSO writes are used where the kernel takes them. */
export const DEFAULT_TUN_USO = true;

/** Submission slots of a TUN's io_uring: one batch of reads or writes goes in one io_uring_enter when it fits. */
const URING_ENTRIES = 256;

/** Bytes a coalescing write needs in its scratch buffer: the largest IPv4 packet plus the virtio header. */
export const COALESCE_SCRATCH_BYTES = MAX_VIRTIO_NET_PACKET_LEN;

const NAME = /^[A-Za-z0-9_.-]{1,15}$/;
export const MIN_MTU = 68; // RFC 791: every IPv4 host must take 68-byte packets
export const MAX_MTU = 65535;

export function validateTunOptions(options: TunOptions): void {
  const { name, mtu, address, prefixLength } = options;
  if (typeof name !== 'string' || name.length === 0) throw new Error('TUN name must not be empty');
  if (name.length > 15) throw new Error(`TUN name "${name}" is too long: Linux allows 15 characters`);
  if (!NAME.test(name)) throw new Error(`TUN name "${name}" may only contain letters, digits, "_", "." and "-"`);
  if (!Number.isInteger(mtu) || mtu < MIN_MTU || mtu > MAX_MTU) {
    throw new Error(`TUN MTU must be an integer from ${MIN_MTU} to ${MAX_MTU}, got ${mtu}`);
  }
  if (address !== undefined && (!Number.isInteger(address) || address <= 0 || address > 0xffffffff)) {
    throw new Error(`TUN address must be a non-zero IPv4 address as a u32, got ${address}`);
  }
  if (prefixLength !== undefined && (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > 32)) {
    throw new Error(`TUN prefix length must be 0 to 32, got ${prefixLength}`);
  }
}

function explainOpenError(name: string, code: string): string | undefined {
  switch (code) {
    case 'EPERM':
    case 'EACCES':
      return 'opening /dev/net/tun needs root or CAP_NET_ADMIN';
    case 'ENOENT':
    case 'ENODEV':
      return '/dev/net/tun is missing: load the tun module (modprobe tun)';
    case 'EBUSY':
      return `TUN device "${name}" is already in use by another process`;
    case 'EINVAL':
      return `"${name}" exists and is not a TUN device`;
    default:
      return undefined;
  }
}

export class Tun implements TunDevice {
  readonly name: string;
  readonly mtu: number;
  /** Opened with a virtio_net_hdr before every packet (TunOptions.offload). */
  readonly offload: boolean;
  /** UDP datagrams are coalesced too (TunOptions.uso asked for it and the kernel takes UDP GSO writes). */
  readonly uso: boolean;
  /** What reads and writes use: `uring` only when asked for and a ring could be made. */
  readonly io: TunIoMode;
  /** Why `uring` was asked for and `readv` is used ('io_uring_setup failed: ... (EPERM)'); undefined otherwise. */
  readonly ioFallback: string | undefined;
  /** Why `uso` was asked for and is off; undefined otherwise. */
  readonly usoFallback: string | undefined;
  private readonly handle: NativeFd;
  private ring: number;
  private readonly coalesceFlags: number;

  private constructor(name: string, mtu: number, fd: number, offload: boolean, uso: boolean, ring: number, ioFallback?: string, usoFallback?: string) {
    this.name = name;
    this.mtu = mtu;
    this.offload = offload;
    this.uso = uso;
    this.ring = ring;
    this.io = ring >= 0 ? 'uring' : 'readv';
    this.ioFallback = ioFallback;
    this.usoFallback = usoFallback;
    this.coalesceFlags = uso ? COALESCE_UDP : 0;
    this.handle = new NativeFd(fd, `TUN device ${name}`);
  }

  /** Creates (or attaches to) the device, sets MTU and address, and brings it up. */
  static open(options: TunOptions): Tun {
    validateTunOptions(options);
    const addon = native();
    const offload = options.offload === true;
    const wantUso = offload && options.uso === true;
    let opened: { fd: number; name: string; uso: boolean };
    try {
      opened = addon.tunOpen(options.name, offload, wantUso);
    } catch (error) {
      throw explainSystemError(error, (code) => explainOpenError(options.name, code));
    }
    let ring = -1;
    let ioFallback: string | undefined;
    if (options.io === 'uring') {
      try {
        ring = addon.uringOpen(URING_ENTRIES);
        // One read of the new, empty device: a kernel whose TUN refuses RWF_NOWAIT (EOPNOTSUPP) shows it here.
        const probe = Buffer.alloc(MAX_VIRTIO_NET_PACKET_LEN);
        addon.tunRead(opened.fd, probe, new Uint32Array([0]), new Uint32Array([probe.length]), 1, ring);
      } catch (error) {
        if (ring >= 0) addon.uringClose(ring);
        ring = -1;
        if (!isSystemError(error)) {
          addon.close(opened.fd);
          throw error;
        }
        const code = (error as NodeJS.ErrnoException).code;
        ioFallback = code === 'ENOSYS'
          ? `${error.message} (the native addon was built without liburing: apt-get install liburing-dev, then npm rebuild)`
          : error.message;
      }
    }
    const usoFallback = wantUso && !opened.uso ? 'the kernel refuses TUN_F_USO4 (Linux 6.2+ takes UDP GSO writes)' : undefined;
    const tun = new Tun(opened.name, options.mtu, opened.fd, offload, wantUso && opened.uso, ring, ioFallback, usoFallback);
    try {
      addon.tunConfigure(opened.name, options.mtu, options.address ?? 0, options.prefixLength ?? 32, true);
    } catch (error) {
      tun.close();
      throw explainSystemError(error, (code) =>
        code === 'EPERM' || code === 'EACCES' ? `configuring TUN device ${opened.name} needs root or CAP_NET_ADMIN` : undefined,
      );
    }
    return tun;
  }

  /** The device's fd (for diagnostics); throws once closed. */
  get fd(): number {
    return this.handle.fd;
  }

  /** As TunDevice.read; with io `uring` filled slots come first (offset/length pairs of the batch may be swapped). */
  read(batch: PacketBatch): number {
    const count = native().tunRead(this.handle.fd, batch.slab, batch.offsets, batch.lengths, batch.count, this.ring);
    batch.count = count;
    return count;
  }

  write(batch: PacketBatch): number {
    return native().tunWrite(this.handle.fd, batch.slab, batch.offsets, batch.lengths, batch.count, this.ring);
  }

  /**
   * Offload devices only: writes bare IPv4 packets (each with VIRTIO_NET_HDR_LEN bytes of headroom before its offset, which
   * is overwritten), adjacent TCP segments of one flow, and with `uso` adjacent UDP datagrams of one flow, coalesced
   * into one GSO write (the first packet's headers are rewritten in place; the rest of the packets are gathered, not
   * copied: `scratch` is no longer used). Returns how many of batch.count packets the kernel accepted.
   */
  writeCoalesced(batch: PacketBatch, scratch?: Buffer): number {
    if (!this.offload) throw new Error(`TUN device ${this.name} was not opened with offload: writeCoalesced needs the virtio header`);
    return native().tunWriteCoalesced(this.handle.fd, batch.slab, batch.offsets, batch.lengths, batch.count, scratch, this.coalesceFlags, this.ring);
  }

  watch(onReadable: () => void): void {
    this.handle.watch(onReadable);
  }

  close(): void {
    this.handle.close();
    if (this.ring >= 0) native().uringClose(this.ring);
    this.ring = -1;
  }
}
