// `vxtun init`: writes the network config, as flannel's JSON, where every node's agent reads it.
import type { Command } from 'commander';
import { LeaseManager } from '../../control/lease-manager';
import { DEFAULT_PREFIX, configKey } from '../../control/lease';
import { formatNetworkConfig, parseNetworkConfig } from '../../control/network-config';
import { parseCidr } from '../../wire/address';
import { cidr, integerIn, oneOf } from '../parse';
import { storeOption, withStore } from '../store-option';

export function initCommand(program: Command): void {
  storeOption(
    program
      .command('init')
      .description("write the overlay's network config (flannel's <prefix>/config JSON)")
      .requiredOption('--network <cidr>', 'the cluster network, e.g. 10.17.0.0/16', cidr)
      .option('--subnet-len <n>', "each node's subnet prefix length (flannel's default when left out)", integerIn(1, 32))
      .option('--backend <type>', 'vxlan, ipip or host-gw', oneOf(['vxlan', 'ipip', 'host-gw'] as const), 'vxlan')
      .option('--vni <n>', 'VXLAN network identifier', integerIn(0, 0xffffff), 1)
      .option('--port <n>', 'VXLAN UDP port (4789 IANA; 8472 Linux and flannel)', integerIn(1, 65535), 4789)
      .option('--direct-routing', 'route directly, without encapsulation, to nodes on our own L2 subnet')
      .option('--prefix <key>', 'store key prefix', DEFAULT_PREFIX)
      .option('--force', 'replace an existing config'),
  ).action(async (opts) =>
    withStore(opts.store, async (store) => {
      const backend =
        opts.backend === 'vxlan'
          ? { type: 'vxlan' as const, vni: opts.vni, port: opts.port, directRouting: Boolean(opts.directRouting) }
          : opts.backend === 'ipip'
            ? { type: 'ipip' as const, directRouting: Boolean(opts.directRouting) }
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
