// `vxtun init`: writes the network config, as flannel's JSON, where every node's agent reads it.
import type { Command } from 'commander';
import { LeaseManager } from '../../control/lease-manager';
import { DEFAULT_PREFIX, configKey } from '../../control/lease';
import { BGP_ENCAPS, type BackendOptions, type BackendType, formatNetworkConfig, parseNetworkConfig } from '../../control/network-config';
import { parseCidr } from '../../wire/address';
import { parseCidr6 } from '../../wire/address6';
import { cidr, cidr6, integerIn, ipv4Address, ipv4List, oneOf } from '../parse';
import { storeOption, withStore } from '../store-option';

/** The backend-specific options of `vxtun init` (commander's names) and the backends that use them. */
const BACKEND_OPTIONS: ReadonlyArray<{ name: string; flag: string; backends: readonly BackendType[] }> = [
  { name: 'vni', flag: '--vni', backends: ['vxlan'] },
  { name: 'port', flag: '--port', backends: ['vxlan'] },
  { name: 'directRouting', flag: '--direct-routing', backends: ['vxlan', 'ipip'] },
  { name: 'as', flag: '--as', backends: ['bgp'] },
  { name: 'encap', flag: '--encap', backends: ['bgp'] },
  { name: 'routeReflectors', flag: '--route-reflectors', backends: ['bgp'] },
  { name: 'gracefulRestart', flag: '--graceful-restart', backends: ['bgp'] },
  { name: 'bfd', flag: '--bfd', backends: ['bgp'] },
];

/**
 * Why an option given on the command line (`given(name)`) does not apply to `backend`, e.g. "--vni applies to the
 * vxlan backend only"; undefined when every given option applies. Written into the config, such an option would be
 * ignored by every agent, so the user's intent would be silently lost.
 */
export function inapplicableOption(backend: BackendType, given: (name: string) => boolean): string | undefined {
  for (const option of BACKEND_OPTIONS) {
    if (given(option.name) && !option.backends.includes(backend)) {
      return `${option.flag} applies to the ${option.backends.join(' and ')} backend${option.backends.length > 1 ? 's' : ''} only`;
    }
  }
  return undefined;
}

/**
 * Why the address-family options do not go together, e.g. "--ipv6-only needs --ipv6-network"; undefined when they do.
 * flanneld would ignore a Network in an IPv6-only config; refusing it says so before anyone relies on it.
 */
export function familyOptionsProblem(opts: { network?: string; ipv6Network?: string; ipv6SubnetLen?: number; ipv6Only?: boolean; subnetLen?: number }): string | undefined {
  if (opts.ipv6Only) {
    if (opts.ipv6Network === undefined) return '--ipv6-only needs --ipv6-network CIDR';
    if (opts.network !== undefined) return '--network does not apply with --ipv6-only (an IPv6-only network has no IPv4 network)';
    if (opts.subnetLen !== undefined) return '--subnet-len does not apply with --ipv6-only; use --ipv6-subnet-len';
    return undefined;
  }
  if (opts.network === undefined) return "required option '--network <cidr>' not specified (or pass --ipv6-only with --ipv6-network)";
  if (opts.ipv6SubnetLen !== undefined && opts.ipv6Network === undefined) return '--ipv6-subnet-len needs --ipv6-network CIDR';
  return undefined;
}

export function initCommand(program: Command): void {
  storeOption(
    program
      .command('init')
      .description("write the overlay's network config (flannel's <prefix>/config JSON)")
      .option('--network <cidr>', 'the cluster network, e.g. 10.17.0.0/16 (required unless --ipv6-only)', cidr)
      .option('--subnet-len <n>', "each node's subnet prefix length (flannel's default when left out)", integerIn(1, 32))
      .option('--subnet-min <ip>', "the lowest subnet handed out (flannel's SubnetMin; default: the network's second subnet)", ipv4Address)
      .option('--subnet-max <ip>', "the highest subnet handed out (flannel's SubnetMax; default: the network's last subnet)", ipv4Address)
      .option('--ipv6-network <cidr>', 'dual stack: the cluster IPv6 network, e.g. fd00:10:244::/56 (vxlan and host-gw)', cidr6)
      .option('--ipv6-subnet-len <n>', "each node's IPv6 subnet prefix length (flannel's default 64 when left out)", integerIn(1, 128))
      .option('--ipv6-only', 'an IPv6-only network ("EnableIPv4": false): needs --ipv6-network, takes no --network')
      .option('--backend <type>', 'vxlan, ipip, host-gw or bgp', oneOf(['vxlan', 'ipip', 'host-gw', 'bgp'] as const), 'vxlan')
      .option('--vni <n>', 'VXLAN network identifier', integerIn(0, 0xffffff), 1)
      .option('--port <n>', 'VXLAN UDP port (4789 IANA; 8472 Linux and flannel)', integerIn(1, 65535), 4789)
      .option('--direct-routing', 'route directly, without encapsulation, to nodes on our own L2 subnet')
      .option('--as <n>', 'bgp: the AS number of every node (iBGP; Calico: 64512)', integerIn(1, 4294967294))
      .option('--encap <mode>', 'bgp: none (kernel routes), ipip (vxtun IP-in-IP), ipip-crosssubnet (IP-in-IP across subnets only)', oneOf(BGP_ENCAPS))
      .option('--route-reflectors <ips>', 'bgp: peer only with these route reflectors (comma-separated), not a full mesh', ipv4List)
      .option('--graceful-restart <seconds>', 'bgp: graceful restart time, 0 = off (BIRD/Calico: 120)', integerIn(0, 4095))
      .option('--bfd', 'bgp: BFD on every session, to notice a dead peer in under a second')
      .option('--prefix <key>', 'store key prefix', DEFAULT_PREFIX)
      .option('--force', 'replace an existing config'),
  ).action(async (opts, command: Command) => {
    // Before the store is opened: --vni and --port have defaults, so only what the user typed counts.
    const inapplicable = inapplicableOption(opts.backend, (name) => command.getOptionValueSource(name) === 'cli');
    if (inapplicable !== undefined) throw new Error(inapplicable);
    const family = familyOptionsProblem(opts);
    if (family !== undefined) throw new Error(family);
    return withStore(opts.store, async (store) => {
      const backend: BackendOptions =
        opts.backend === 'vxlan'
          ? { type: 'vxlan' as const, vni: opts.vni, port: opts.port, directRouting: Boolean(opts.directRouting) }
          : opts.backend === 'ipip'
            ? { type: 'ipip' as const, directRouting: Boolean(opts.directRouting) }
            : opts.backend === 'bgp'
              ? { type: 'bgp' as const, as: opts.as, encap: opts.encap, routeReflectors: opts.routeReflectors, gracefulRestart: opts.gracefulRestart, bfd: Boolean(opts.bfd) }
              : { type: 'host-gw' as const };
      const json = formatNetworkConfig({
        network: opts.network === undefined ? undefined : parseCidr(opts.network),
        subnetLen: opts.subnetLen,
        subnetMin: opts.subnetMin,
        subnetMax: opts.subnetMax,
        backend,
        ipv6Network: opts.ipv6Network === undefined ? undefined : parseCidr6(opts.ipv6Network),
        ipv6SubnetLen: opts.ipv6SubnetLen,
        ipv6Only: Boolean(opts.ipv6Only),
      });
      parseNetworkConfig(json); // refuse what agents would refuse, before writing it
      try {
        await new LeaseManager({ store, prefix: opts.prefix }).writeNetworkConfig(json, { replace: Boolean(opts.force) });
      } catch (err) {
        if (/already exists/.test((err as Error).message)) throw new Error(`${(err as Error).message}; pass --force to replace it`);
        throw err;
      }
      process.stdout.write(`${configKey(opts.prefix)} = ${json}\n`);
    });
  });
}
