// The host's network interfaces: which one carries an address, its subnet (who is L2-adjacent, for host-gw and
// direct routing) and its MTU (the underlay MTU the overlay MTU is cut from).
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { type Cidr, parseCidr } from '../wire/address';

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
