// `vxtun init`: writes the network config, as flannel's JSON, where every node's agent reads it.
import type { Command } from 'commander';
import { LeaseManager } from '../../control/lease-manager';
import { DEFAULT_PREFIX, configKey } from '../../control/lease';
import { BGP_ENCAPS, type BackendOptions, formatNetworkConfig, parseNetworkConfig } from '../../control/network-config';
import { parseCidr } from '../../wire/address';
import { cidr, integerIn, ipv4List, oneOf } from '../parse';
import { storeOption, withStore } from '../store-option';

export function initCommand(program: Command): void {
  storeOption(
    program
      .command('init')
      .description("write the overlay's network config (flannel's <prefix>/config JSON)")
      .requiredOption('--network <cidr>', 'the cluster network, e.g. 10.17.0.0/16', cidr)
      .option('--subnet-len <n>', "each node's subnet prefix length (flannel's default when left out)", integerIn(1, 32))
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
  ).action(async (opts) =>
    withStore(opts.store, async (store) => {
      const bgpOnly = ['as', 'encap', 'routeReflectors', 'gracefulRestart', 'bfd'].filter((name) => opts[name] !== undefined);
      if (opts.backend !== 'bgp' && bgpOnly.length > 0) {
        throw new Error(`--${bgpOnly[0]!.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} is for --backend bgp only`);
      }
      const backend: BackendOptions =
        opts.backend === 'vxlan'
          ? { type: 'vxlan' as const, vni: opts.vni, port: opts.port, directRouting: Boolean(opts.directRouting) }
          : opts.backend === 'ipip'
            ? { type: 'ipip' as const, directRouting: Boolean(opts.directRouting) }
            : opts.backend === 'bgp'
              ? { type: 'bgp' as const, as: opts.as, encap: opts.encap, routeReflectors: opts.routeReflectors, gracefulRestart: opts.gracefulRestart, bfd: Boolean(opts.bfd) }
              : { type: 'host-gw' as const };
      const json = formatNetworkConfig({ network: parseCidr(opts.network), subnetLen: opts.subnetLen, backend });
      parseNetworkConfig(json); // refuse what agents would refuse, before writing it
      try {
        await new LeaseManager({ store, prefix: opts.prefix }).writeNetworkConfig(json, { replace: Boolean(opts.force) });
      } catch (err) {
        if (/already exists/.test((err as Error).message)) throw new Error(`${(err as Error).message}; pass --force to replace it`);
        throw err;
      }
      process.stdout.write(`${configKey(opts.prefix)} = ${json}\n`);
    }),
  );
}
