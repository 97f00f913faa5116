// `vxtun agent`: run this node of the overlay until SIGINT/SIGTERM.
import type { Command } from 'commander';
import { Agent } from '../../control/agent';
import { DEFAULT_PREFIX } from '../../control/lease';
import { type LogLevel, consoleLogger } from '../../control/log';
import { serveMetrics } from '../../control/metrics';
import { defaultStatusSocket, serveAgentApi } from '../../control/status-server';
import { formatIPv4 } from '../../wire/address';
import { hostPort, integerIn, ipv4Address, macAddress, oneOf } from '../parse';
import { storeOption } from '../store-option';

export function agentCommand(program: Command): void {
  storeOption(
    program
      .command('agent')
      .description('run this node: acquire a subnet, forward its overlay traffic, follow the other nodes')
      .requiredOption('--public-ip <ip>', "this node's underlay address (flannel's PublicIP)", ipv4Address)
      .option('--tun <name>', 'TUN device name', 'vxtun0')
      .option('--subnet-file <path>', "where to write flannel's subnet.env for the CNI plugin", '/run/flannel/subnet.env')
      .option('--ip-masq', "install flanneld's masquerade rules (pods keep their address inside the cluster network, NAT beyond it) and write FLANNEL_IPMASQ=true (default)", true)
      .option('--no-ip-masq', 'install no masquerade rules; FLANNEL_IPMASQ=false, so the CNI bridge plugin masquerades (also pod-to-pod traffic to other nodes)')
      .option('--ip-masq-tool <tool>', 'firewall tooling for --ip-masq: auto (iptables when present, else nftables), iptables or nftables', oneOf(['auto', 'iptables', 'nftables'] as const), 'auto')
      .option('--ip-masq-resync <seconds>', 'how often the masquerade rules are checked and restored (flannel: --iptables-resync)', integerIn(1, 3600), 10)
      .option('--prefix <key>', 'store key prefix', DEFAULT_PREFIX)
      .option('--lease-ttl <seconds>', "lease time to live (flannel's: 24 h)", integerIn(5, 365 * 86400), 86400)
      .option('--vtep-mac <mac>', 'VTEP MAC (default: derived from --public-ip, stable across restarts)', macAddress)
      .option('--no-offload', 'turn off TUN TSO/checksum offload and UDP GSO/GRO (one packet per system call)')
      .option('--source-ports <n>', 'VXLAN: outer UDP source ports to spread flows over (ECMP entropy)', integerIn(1, 64), 4)
      .option('--batch <n>', 'packets per system call batch', integerIn(1, 1024), 64)
      .option('--metrics <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics', hostPort)
      .option('--status-socket <path>', 'Unix socket answering `vxtun status` (default /run/vxtun/agent-<public-ip>.sock)')
      .option('--log-level <level>', 'debug, info, warn or error', oneOf(['debug', 'info', 'warn', 'error'] as const), 'info'),
  ).action(async (opts) => {
    const log = consoleLogger(opts.logLevel as LogLevel);
    const agent = await Agent.start({
      storeUrl: opts.store,
      prefix: opts.prefix,
      publicIp: opts.publicIp,
      tunName: opts.tun,
      subnetFile: opts.subnetFile,
      ipMasq: opts.ipMasq !== false,
      ipMasqTool: opts.ipMasqTool,
      ipMasqResyncMs: opts.ipMasqResync * 1000,
      leaseTtlSeconds: opts.leaseTtl,
      vtepMac: opts.vtepMac,
      batchSize: opts.batch,
      offload: opts.offload,
      sourcePorts: opts.sourcePorts,
      log,
    });
    const socketPath = opts.statusSocket ?? defaultStatusSocket(formatIPv4(opts.publicIp));
    const server = await serveAgentApi(socketPath, {
      status: () => agent.status(),
      trace: (filter, withBytes, send) => agent.trace({ filter, withBytes, onJourney: send }),
    });
    const metrics = opts.metrics === undefined ? undefined : await serveMetrics(opts.metrics.host, opts.metrics.port, () => agent.status());
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info('stopping', { signal });
      server.close();
      metrics?.close();
      agent.stop().then(
        () => process.exit(0),
        (err: Error) => {
          log.error('stop failed', { error: err.message });
          process.exit(1);
        },
      );
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  });
}
