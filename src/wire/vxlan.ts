// VXLAN header (RFC 7348 section 5): flags, 24-bit VNI, reserved bytes. Receivers ignore the reserved bits and
// drop frames whose I flag (VNI valid) is clear.
import { WireError } from './errors';
import { HeaderView } from './view';

const F = {
  FLAGS: 0,
  RESERVED_1: 1, // 3 bytes
  VNI: 4, // 3 bytes
  RESERVED_2: 7,
  END: 8,
} as const;

export const VXLAN_HEADER_LEN = F.END;
export const VXLAN_PORT_IANA = 4789;
/** Linux's default when `ip link add ... type vxlan` is given no dstport; flannel's default too. */
export const VXLAN_PORT_LINUX = 8472;
/** Outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14: overlay MTU = underlay MTU - 50. */
export const VXLAN_OVERHEAD = 50;
export const VXLAN_FLAG_I = 0x08;
export const VXLAN_VNI_MAX = 0xffffff;

export type VxlanProblem = 'truncated' | 'no-vni-flag';

export class VxlanView extends HeaderView {

  get flags(): number {
    return this.buf[this.off + F.FLAGS];
  }
  set flags(v: number) {
    this.buf[this.off + F.FLAGS] = v;
  }

  get vniValid(): boolean {
    return (this.buf[this.off + F.FLAGS] & VXLAN_FLAG_I) !== 0;
  }

  get vni(): number {
    return this.buf.readUIntBE(this.off + F.VNI, 3);
  }
  set vni(v: number) {
    this.buf.writeUIntBE(v & VXLAN_VNI_MAX, this.off + F.VNI, 3);
  }

  /** Where the inner Ethernet frame starts. */
  get payloadOffset(): number {
    return this.off + F.END;
  }
}

/** Writes a complete header: I flag set, VNI, reserved bytes zero. Two stores, for the encapsulation hot path. */
export function writeVxlanHeader(buf: Buffer, off: number, vni: number): void {
  buf.writeUInt32BE(VXLAN_FLAG_I << 24, off);
  buf.writeUInt32BE(((vni & VXLAN_VNI_MAX) << 8) >>> 0, off + F.VNI);
}

export function checkVxlan(buf: Buffer, off: number, len: number): VxlanProblem | undefined {
  if (off < 0 || len < VXLAN_HEADER_LEN || off + len > buf.length) return 'truncated';
  if ((buf[off + F.FLAGS] & VXLAN_FLAG_I) === 0) return 'no-vni-flag';
  return undefined;
}

export interface VxlanRepr {
  vni: number;
}

export function parseVxlan(buf: Buffer, off = 0, len = buf.length - off): VxlanRepr {
  const problem = checkVxlan(buf, off, len);
  if (problem) throw new WireError('vxlan', problem);
  return { vni: buf.readUIntBE(off + F.VNI, 3) };
}

export function emitVxlan(repr: VxlanRepr, buf: Buffer, off: number): number {
  writeVxlanHeader(buf, off, repr.vni);
  return VXLAN_HEADER_LEN;
}
