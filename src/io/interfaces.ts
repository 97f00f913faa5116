// The host's network interfaces: which one carries an address, and its MTU (the underlay MTU the overlay MTU is cut from).
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';

export interface HostInterface {
  readonly name: string;
  readonly mtu: number;
}

export function interfaceWithAddress(address: string): HostInterface | undefined {
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if (addrs?.some((a) => a.family === 'IPv4' && a.address === address)) {
      return { name, mtu: Number(readFileSync(`/sys/class/net/${name}/mtu`, 'utf8').trim()) };
    }
  }
  return undefined;
}
