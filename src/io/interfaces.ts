// The host's network interfaces: which one carries an address, its subnet (who is L2-adjacent, for host-gw and
// direct routing) and its MTU (the underlay MTU the overlay MTU is cut from).
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { type Cidr, parseCidr } from '../wire/address';
import { formatIPv6, parseIPv6 } from '../wire/address6';

export interface HostInterface {
  readonly name: string;
  readonly mtu: number;
  /** The subnet of the address on this interface: nodes inside it are reachable without a router. */
  readonly subnet: Cidr;
}

export function interfaceWithAddress(address: string): HostInterface | undefined {
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    const match = addrs?.find((a) => a.family === 'IPv4' && a.address === address);
    if (match?.cidr) {
      return {
        name,
        mtu: Number(readFileSync(`/sys/class/net/${name}/mtu`, 'utf8').trim()),
        subnet: parseCidr(match.cidr, true),
      };
    }
  }
  return undefined;
}

/**
 * Whether an interface of this host has `address`: IPv4 dotted quad or IPv6 text (compared in RFC 5952 form; a zone,
 * as in fe80::1%eth0, is ignored).
 */
export function hostHasAddress(address: string): boolean {
  if (!address.includes(':')) return interfaceWithAddress(address) !== undefined;
  const wanted = formatIPv6(parseIPv6(address));
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.family !== 'IPv6') continue;
      const zone = a.address.indexOf('%');
      try {
        if (formatIPv6(parseIPv6(zone < 0 ? a.address : a.address.slice(0, zone))) === wanted) return true;
      } catch {
        // an address Node prints in a form we do not parse: not the one we look for
      }
    }
  }
  return false;
}
