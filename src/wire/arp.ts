// ARP for IPv4 over Ethernet (RFC 826): the only kind a VTEP answers. Anything else is 'unsupported'.
import { readMac, writeMac, type IPv4, type Mac } from './address';
import { WireError } from './errors';
import { HeaderView } from './view';

const F = {
  HARDWARE_TYPE: 0,
  PROTOCOL_TYPE: 2,
  HARDWARE_LENGTH: 4,
  PROTOCOL_LENGTH: 5,
  OPERATION: 6,
  SENDER_MAC: 8,
  SENDER_IP: 14,
  TARGET_MAC: 18,
  TARGET_IP: 24,
  END: 28,
} as const;

export const ARP_PACKET_LEN = F.END;
export const ARP_HEADER_LEN = ARP_PACKET_LEN;
export const ARP_REQUEST = 1;
export const ARP_REPLY = 2;
const HARDWARE_ETHERNET = 1;
const PROTOCOL_IPV4 = 0x0800;

export type ArpProblem = 'truncated' | 'unsupported';

export class ArpView extends HeaderView {

  get hardwareType(): number {
    return this.buf.readUInt16BE(this.off + F.HARDWARE_TYPE);
  }
  get protocolType(): number {
    return this.buf.readUInt16BE(this.off + F.PROTOCOL_TYPE);
  }
  get hardwareLength(): number {
    return this.buf[this.off + F.HARDWARE_LENGTH];
  }
  get protocolLength(): number {
    return this.buf[this.off + F.PROTOCOL_LENGTH];
  }

  /** Writes the fixed Ethernet/IPv4 preamble (types and lengths). */
  setEthernetIpv4(): void {
    this.buf.writeUInt16BE(HARDWARE_ETHERNET, this.off + F.HARDWARE_TYPE);
    this.buf.writeUInt16BE(PROTOCOL_IPV4, this.off + F.PROTOCOL_TYPE);
    this.buf[this.off + F.HARDWARE_LENGTH] = 6;
    this.buf[this.off + F.PROTOCOL_LENGTH] = 4;
  }

  get operation(): number {
    return this.buf.readUInt16BE(this.off + F.OPERATION);
  }
  set operation(v: number) {
    this.buf.writeUInt16BE(v, this.off + F.OPERATION);
  }

  get senderMac(): Mac {
    return readMac(this.buf, this.off + F.SENDER_MAC);
  }
  set senderMac(v: Mac) {
    writeMac(this.buf, this.off + F.SENDER_MAC, v);
  }

  get senderIp(): IPv4 {
    return this.buf.readUInt32BE(this.off + F.SENDER_IP);
  }
  set senderIp(v: IPv4) {
    this.buf.writeUInt32BE(v >>> 0, this.off + F.SENDER_IP);
  }

  get targetMac(): Mac {
    return readMac(this.buf, this.off + F.TARGET_MAC);
  }
  set targetMac(v: Mac) {
    writeMac(this.buf, this.off + F.TARGET_MAC, v);
  }

  get targetIp(): IPv4 {
    return this.buf.readUInt32BE(this.off + F.TARGET_IP);
  }
  set targetIp(v: IPv4) {
    this.buf.writeUInt32BE(v >>> 0, this.off + F.TARGET_IP);
  }
}

export function checkArp(buf: Buffer, off: number, len: number): ArpProblem | undefined {
  if (off < 0 || len < ARP_PACKET_LEN || off + len > buf.length) return 'truncated';
  if (
    buf.readUInt16BE(off + F.HARDWARE_TYPE) !== HARDWARE_ETHERNET ||
    buf.readUInt16BE(off + F.PROTOCOL_TYPE) !== PROTOCOL_IPV4 ||
    buf[off + F.HARDWARE_LENGTH] !== 6 ||
    buf[off + F.PROTOCOL_LENGTH] !== 4
  ) {
    return 'unsupported';
  }
  return undefined;
}

export interface ArpRepr {
  /** ARP_REQUEST, ARP_REPLY, or any other number as found. */
  operation: number;
  senderMac: Mac;
  senderIp: IPv4;
  targetMac: Mac;
  targetIp: IPv4;
}

export function parseArp(buf: Buffer, off = 0, len = buf.length - off): ArpRepr {
  const problem = checkArp(buf, off, len);
  if (problem) throw new WireError('arp', problem);
  const v = new ArpView(buf, off);
  return { operation: v.operation, senderMac: v.senderMac, senderIp: v.senderIp, targetMac: v.targetMac, targetIp: v.targetIp };
}

export function emitArp(repr: ArpRepr, buf: Buffer, off: number): number {
  const v = new ArpView(buf, off);
  v.setEthernetIpv4();
  v.operation = repr.operation;
  v.senderMac = repr.senderMac;
  v.senderIp = repr.senderIp;
  v.targetMac = repr.targetMac;
  v.targetIp = repr.targetIp;
  return ARP_PACKET_LEN;
}
