// IPv4 and MAC addresses as plain numbers: the data path compares and hashes them without allocating.
// An IPv4 address is an unsigned 32-bit integer in host order; a MAC is a 48-bit integer (fits a double exactly).

export type IPv4 = number;
export type Mac = number;

export interface Cidr {
  readonly address: IPv4; // network address (host bits cleared)
  readonly prefixLength: number;
}

export function parseIPv4(text: string): IPv4 {
  const parts = text.split('.');
  if (parts.length !== 4) throw new Error(`invalid IPv4 address "${text}"`);
  let value = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part) || Number(part) > 255) throw new Error(`invalid IPv4 address "${text}"`);
    value = value * 256 + Number(part);
  }
  return value;
}

export function formatIPv4(ip: IPv4): string {
  return `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
}

export function isIPv4(text: string): boolean {
  try {
    parseIPv4(text);
    return true;
  } catch {
    return false;
  }
}

export function prefixMask(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
}

/** Parses "10.17.0.0/16". Host bits must be zero unless `allowHostBits` (then they are cleared). */
export function parseCidr(text: string, allowHostBits = false): Cidr {
  const slash = text.indexOf('/');
  if (slash < 0) throw new Error(`invalid CIDR "${text}": expected ADDRESS/PREFIX`);
  const address = parseIPv4(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (!/^\d{1,2}$/.test(lenText) || Number(lenText) > 32) throw new Error(`invalid CIDR "${text}": prefix must be 0-32`);
  const prefixLength = Number(lenText);
  const network = (address & prefixMask(prefixLength)) >>> 0;
  if (network !== address && !allowHostBits) {
    throw new Error(`invalid CIDR "${text}": host bits set (did you mean ${formatIPv4(network)}/${prefixLength}?)`);
  }
  return { address: network, prefixLength };
}

export function formatCidr(cidr: Cidr): string {
  return `${formatIPv4(cidr.address)}/${cidr.prefixLength}`;
}

export function cidrContains(cidr: Cidr, ip: IPv4): boolean {
  return ((ip & prefixMask(cidr.prefixLength)) >>> 0) === cidr.address;
}

export function cidrEquals(a: Cidr, b: Cidr): boolean {
  return a.address === b.address && a.prefixLength === b.prefixLength;
}

export function parseMac(text: string): Mac {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(text)) throw new Error(`invalid MAC address "${text}"`);
  return parseInt(text.replace(/:/g, ''), 16);
}

export function formatMac(mac: Mac): string {
  return mac.toString(16).padStart(12, '0').replace(/(..)(?!$)/g, '$1:');
}

export const BROADCAST_MAC: Mac = 0xffffffffffff;

export function readMac(buf: Buffer, offset: number): Mac {
  return buf.readUIntBE(offset, 6);
}

export function writeMac(buf: Buffer, offset: number, mac: Mac): void {
  buf.writeUIntBE(mac, offset, 6);
}
