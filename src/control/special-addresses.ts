// IPv4 blocks that can be neither a node's underlay address (a lease's PublicIP, --public-ip) nor part of a pod
// network: packets to them never reach another node. Sending VXLAN to 127.0.0.1 loops back into this host, to
// 224.0.0.0/4 it goes out as multicast, to 0.0.0.0 nowhere (RFC 6890's special-purpose registry, RFC 1122 3.2.1.3,
// RFC 5771, RFC 1112 4). Link-local 169.254.0.0/16 is left alone: a point-to-point underlay may use it.
import { type Cidr, type IPv4, cidrContains, formatCidr, formatIPv4, parseCidr } from '../wire/address';
import { type Cidr6, type IPv6, LINK_LOCAL6, LOOPBACK6, MULTICAST6, V4_MAPPED6, cidr6Contains, formatCidr6, formatIPv6 } from '../wire/address6';

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

const SPECIAL_BLOCKS6: readonly { block: Cidr6; what: string }[] = [
  { block: { address: 0n, prefixLength: 128 }, what: 'unspecified address' },
  { block: { address: LOOPBACK6, prefixLength: 128 }, what: 'loopback address' },
  { block: V4_MAPPED6, what: 'IPv4-mapped range (::ffff:0:0/96)' },
  { block: LINK_LOCAL6, what: 'link-local range (fe80::/10)' },
  { block: MULTICAST6, what: 'multicast range (ff00::/8)' },
];

/**
 * Why `ip` cannot be a node's IPv6 underlay address (a lease's PublicIPv6, --public-ipv6), e.g. "::1 is the loopback
 * address (::1)", or undefined when it can be. Link-local is refused here, unlike IPv4's: an IPv6 link-local address
 * needs a zone (interface) to be reached, which a lease cannot carry (RFC 4007 section 6). IPv4-mapped addresses are
 * IPv4 underlays in disguise (RFC 4291 section 2.5.5.2); they belong in PublicIP.
 */
export function unusableUnderlayAddress6(ip: IPv6): string | undefined {
  for (const special of SPECIAL_BLOCKS6) {
    if (!cidr6Contains(special.block, ip)) continue;
    return special.block.prefixLength === 128 ? `${formatIPv6(ip)} is the ${special.what}` : `${formatIPv6(ip)} is in the ${special.what}`;
  }
  return undefined;
}

/** Why `network` cannot hold IPv6 pod subnets (it touches ::, ::1, IPv4-mapped, link-local or multicast), or undefined. */
export function unusablePodNetwork6(network: Cidr6): string | undefined {
  for (const special of SPECIAL_BLOCKS6) {
    const inside = network.prefixLength >= special.block.prefixLength && cidr6Contains(special.block, network.address);
    const around = network.prefixLength < special.block.prefixLength && cidr6Contains(network, special.block.address);
    if (inside) return `${formatCidr6(network)} is in the ${special.what}`;
    if (around) return `${formatCidr6(network)} takes in the ${special.what}`;
  }
  return undefined;
}
