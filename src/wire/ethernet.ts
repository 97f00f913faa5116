// Ethernet II header (no 802.1Q tag: VXLAN inner frames and our VTEP never carry one).
import { readMac, writeMac, type Mac } from './address';
import { WireError } from './errors';
import { HeaderView } from './view';

const F = {
  DESTINATION: 0,
  SOURCE: 6,
  ETHER_TYPE: 12,
  END: 14,
} as const;

export const ETHERNET_HEADER_LEN = F.END;
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
/** IPv6 (RFC 8200; VXLAN carries it behind an inner Ethernet header like IPv4, flannel-v6.<VNI>). */
export const ETHERTYPE_IPV6 = 0x86dd;

export type EthernetProblem = 'truncated';

export class EthernetView extends HeaderView {

  get destination(): Mac {
    return readMac(this.buf, this.off + F.DESTINATION);
  }
  set destination(v: Mac) {
    writeMac(this.buf, this.off + F.DESTINATION, v);
  }

  get source(): Mac {
    return readMac(this.buf, this.off + F.SOURCE);
  }
  set source(v: Mac) {
    writeMac(this.buf, this.off + F.SOURCE, v);
  }

  get etherType(): number {
    return this.buf.readUInt16BE(this.off + F.ETHER_TYPE);
  }
  set etherType(v: number) {
    this.buf.writeUInt16BE(v, this.off + F.ETHER_TYPE);
  }

  get payloadOffset(): number {
    return this.off + F.END;
  }
}

export function checkEthernet(buf: Buffer, off: number, len: number): EthernetProblem | undefined {
  if (off < 0 || len < ETHERNET_HEADER_LEN || off + len > buf.length) return 'truncated';
  return undefined;
}

export interface EthernetRepr {
  destination: Mac;
  source: Mac;
  etherType: number;
}

export function parseEthernet(buf: Buffer, off = 0, len = buf.length - off): EthernetRepr {
  const problem = checkEthernet(buf, off, len);
  if (problem) throw new WireError('ethernet', problem);
  const view = new EthernetView(buf, off);
  return { destination: view.destination, source: view.source, etherType: view.etherType };
}

export function emitEthernet(repr: EthernetRepr, buf: Buffer, off: number): number {
  const view = new EthernetView(buf, off);
  view.destination = repr.destination;
  view.source = repr.source;
  view.etherType = repr.etherType;
  return ETHERNET_HEADER_LEN;
}
