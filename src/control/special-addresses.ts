// IPv4 blocks that can be neither a node's underlay address (a lease's PublicIP, --public-ip) nor part of a pod
// network: packets to them never reach another node. Sending VXLAN to 127.0.0.1 loops back into this host, to
// 224.0.0.0/4 it goes out as multicast, to 0.0.0.0 nowhere (RFC 6890's special-purpose registry, RFC 1122 3.2.1.3,
// RFC 5771, RFC 1112 4). Link-local 169.254.0.0/16 is left alone: a point-to-point underlay may use it.
import { type Cidr, type IPv4, cidrContains, formatCidr, formatIPv4, parseCidr } from '../wire/address';

interface SpecialBlock {
  block: Cidr;
  /** Reads after "is a" / "is in": "loopback address (127.0.0.0/8)". */
  what: string;
}

const BROADCAST = 0xffffffff;

const SPECIAL_BLOCKS: readonly SpecialBlock[] = [
  { block: parseCidr('0.0.0.0/8'), what: '"this network" address (0.0.0.0/8)' },
  { block: parseCidr('127.0.0.0/8'), what: 'loopback address (127.0.0.0/8)' },
  { block: parseCidr('224.0.0.0/4'), what: 'multicast address (224.0.0.0/4)' },
  { block: parseCidr('240.0.0.0/4'), what: 'reserved address (240.0.0.0/4)' },
];

function blockOf(ip: IPv4): SpecialBlock | undefined {
  return SPECIAL_BLOCKS.find((s) => cidrContains(s.block, ip));
}

/**
 * Why `ip` cannot be a node's underlay address, e.g. "127.0.0.1 is a loopback address (127.0.0.0/8)", or undefined
 * when it can be.
 */
export function unusableUnderlayAddress(ip: IPv4): string | undefined {
  if (ip === BROADCAST) return '255.255.255.255 is the broadcast address';
  if (ip === 0) return '0.0.0.0 is the unspecified address';
  const special = blockOf(ip);
  return special === undefined ? undefined : `${formatIPv4(ip)} is a ${special.what}`;
}

/**
 * Why `network` cannot hold pod subnets, e.g. "127.0.0.0/16 is in the loopback range (127.0.0.0/8)", or undefined when
 * it touches none of the special blocks.
 */
export function unusablePodNetwork(network: Cidr): string | undefined {
  for (const special of SPECIAL_BLOCKS) {
    const range = special.what.replace(/ address /, ' range ');
    if (network.prefixLength >= special.block.prefixLength && cidrContains(special.block, network.address)) {
      return `${formatCidr(network)} is in the ${range}`;
    }
    if (network.prefixLength < special.block.prefixLength && cidrContains(network, special.block.address)) {
      return `${formatCidr(network)} takes in the ${range}`;
    }
  }
  return undefined;
}
