// `vxtun agent`: run this node of the overlay until SIGINT/SIGTERM.
import { hostname } from 'node:os';
import type { Server } from 'node:http';
import type { Command } from 'commander';
import { Agent } from '../../control/agent';
import { DEFAULT_DF_MODE, DF_MODES, type DfMode } from '../../dataplane/outer-df';
import { DEFAULT_PREFIX } from '../../control/lease';
import { type LogLevel, type Logger, consoleLogger } from '../../control/log';
import { serveMetrics } from '../../control/metrics';
import { defaultStatusSocket, serveAgentApi } from '../../control/status-server';
import { type IPv4, formatIPv4 } from '../../wire/address';
import { type IPv6, formatIPv6 } from '../../wire/address6';
import { DEFAULT_TUN_IO, DEFAULT_TUN_USO } from '../../io/tun';
import { TUN_IO_MODES, type TunIoMode } from '../../io/types';
import { hostPort, integerIn, ipv4Address, ipv6Address, macAddress, nodeName, oneOf, tunName, unixSocketPath } from '../parse';
import { storeOption } from '../store-option';

/** How long a stop may take (store close, kernel cleanup) before we exit anyway. */
const STOP_DEADLINE_MS = 5000;

/**
 * The process-level last resort. These handlers should never fire: every timer, stream and request handler of the
 * agent catches what it calls. If one does, it logs one line (no stack), starts `shutdown(1)` (the normal stop,
 * bounded in time) or, when a stop is already under way (`stopping()`), exits 1 at once.
 */
export function installLastResort(log: Logger, stopping: () => boolean, shutdown: (code: number) => void): void {
  const lastResort = (what: unknown): void => {
    log.error('internal error: the agent stops (please report this)', { error: what instanceof Error ? what.message : String(what) });
    if (stopping()) process.exit(1);
    shutdown(1);
  };
  process.on('uncaughtException', lastResort);
  process.on('unhandledRejection', lastResort);
}

/**
 * Neither underlay address given: say which one to pass before anything starts. Which one the network needs (IPv4
 * unless it is IPv6-only) is known only once its config is read (agentConfigProblem in control/agent.ts).
 */
export function publicAddressProblem(publicIp: IPv4 | undefined, publicIpv6: IPv6 | undefined): string | undefined {
  if (publicIp !== undefined || publicIpv6 !== undefined) return undefined;
  return "pass --public-ip with this node's IPv4 underlay address (in an IPv6-only network, --public-ipv6 with its IPv6 one instead)";
}

/** The name in the default status socket path: the IPv4 underlay address, or the IPv6 one on an IPv6-only node. */
export function statusSocketName(publicIp: IPv4 | undefined, publicIpv6: IPv6 | undefined): string {
  if (publicIp !== undefined) return formatIPv4(publicIp);
  if (publicIpv6 !== undefined) return formatIPv6(publicIpv6);
  throw new Error('no underlay address to name the status socket by');
}

export function agentCommand(program: Command): void {
  storeOption(
    program
      .command('agent')
      .description('run this node: acquire a subnet, forward its overlay traffic, follow the other nodes')
      .option('--public-ip <ip>', "required unless the network is IPv6-only (\"EnableIPv4\": false; then --public-ipv6 is the underlay): this node's IPv4 underlay address (flannel's PublicIP)", ipv4Address)
      .option('--tun <name>', 'TUN device name (1-15 letters, digits, "_", ".", "-")', tunName, 'vxtun0')
      .option('--subnet-file <path>', "where to write flannel's subnet.env for the CNI plugin", '/run/flannel/subnet.env')
      .option('--ip-masq', "install flanneld's masquerade rules (pods keep their address inside the cluster network, NAT beyond it) and write FLANNEL_IPMASQ=true (the default)")
      .option('--no-ip-masq', 'install no masquerade rules; FLANNEL_IPMASQ=false, so the CNI bridge plugin masquerades (also pod-to-pod traffic to other nodes)')
      .option('--ip-masq-tool <tool>', 'firewall tooling for --ip-masq: auto (iptables when present, else nftables), iptables or nftables', oneOf(['auto', 'iptables', 'nftables'] as const), 'auto')
      .option('--ip-masq-resync <seconds>', 'how often the masquerade rules are checked and restored (flannel: --iptables-resync)', integerIn(1, 3600), 10)
      .option('--prefix <key>', 'store key prefix', DEFAULT_PREFIX)
      .option('--store-wait <seconds>', 'at start, how long to keep retrying a store that does not answer before giving up (flanneld retries forever)', integerIn(0, 86400), 60)
      .option('--lease-ttl <seconds>', "lease time to live (flannel's: 24 h)", integerIn(5, 365 * 86400), 86400)
      .option('--public-ipv6 <ip>', "this node's IPv6 underlay address (flannel's PublicIPv6); required in an IPv6-only network; dual stack without it: IPv6 pods ride the IPv4 underlay", ipv6Address)
      .option('--node-name <name>', "this node's name, kept in its lease: its lease and VTEP MAC survive a new --public-ip (default: the host name)", nodeName)
      .option('--vtep-mac <mac>', 'VTEP MAC (default: derived from the node name, stable across restarts)', macAddress)
      .option('--no-offload', 'turn off TUN TSO/checksum offload and UDP GSO/GRO (one packet per system call)')
      .option('--ipip-segment-batch <on|off>', 'IP-in-IP: send each TCP super-packet through one native call that segments and sendmmsgs it (on), or segment, then sendmmsg (off: the earlier path, for comparison)', oneOf(['on', 'off'] as const), 'on')
      .option('--tun-io <mode>', 'TUN reads and writes: readv (a system call per packet) or uring (a batch per io_uring_enter; falls back to readv where io_uring is unavailable)', oneOf(TUN_IO_MODES), DEFAULT_TUN_IO)
      .option('--tun-uso <on|off>', 'write consecutive UDP datagrams of one flow into the TUN as one UDP GSO write (Linux 6.2+, needs offload; off where the kernel refuses)', oneOf(['on', 'off'] as const), DEFAULT_TUN_USO ? 'on' : 'off')
      .option('--busy-poll <us>', 'keep polling the TUN and sockets this many microseconds after the last packet before sleeping (0: off): lower latency for a spinning core', integerIn(0, 1000), 0)
      .option('--source-ports <n>', 'VXLAN: outer UDP source ports to spread flows over (ECMP entropy)', integerIn(1, 64), 4)
      .option('--df <mode>', "outer IPv4 DF bit, as ip-link(8)'s df: unset (the kernel's vxlan default: a smaller underlay hop fragments), set, or inherit (the inner packet's)", oneOf(DF_MODES), DEFAULT_DF_MODE)
      .option('--batch <n>', 'packets per system call batch', integerIn(1, 1024), 64)
      .option('--bird-dir <path>', "bgp: our BIRD's config, control socket and pid file (default /run/vxtun/bird-<public-ip>)")
      .option('--metrics <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics', hostPort)
      .option('--status-socket <path>', 'Unix socket answering `vxtun status` (default /run/vxtun/agent-<public-ip>.sock, agent-<public-ipv6>.sock without --public-ip)', unixSocketPath)
      .option('--log-level <level>', 'debug, info, warn or error', oneOf(['debug', 'info', 'warn', 'error'] as const), 'info'),
  ).action(async (opts) => {
    const log = consoleLogger(opts.logLevel as LogLevel);
    const problem = publicAddressProblem(opts.publicIp, opts.publicIpv6);
    if (problem !== undefined) program.error(`error: ${problem}`);
    if (opts.nodeName === undefined && /^localhost(\.|$)/.test(hostname())) {
      log.warn('the host name is localhost: nodes sharing a name take each other\'s lease; give each a --node-name');
    }
    let starting: Promise<Agent> | undefined;
    let server: Server | undefined;
    let metrics: Server | undefined;
    let stopping = false;

    /** The one way out once started: close the API, stop the agent (bounded in time), exit with `code`. */
    const shutdown = (code: number): void => {
      if (stopping) return;
      stopping = true;
      server?.close();
      metrics?.close();
      // An agent still starting is stopped once it has started (a failed start has nothing to stop); a store that
      // hangs cannot hold us past the deadline.
      const stopped = (starting ?? Promise.reject(new Error('not started'))).then(
        (agent) => agent.stop(),
        () => undefined,
      );
      const deadline = new Promise<void>((resolve) => setTimeout(resolve, STOP_DEADLINE_MS));
      Promise.race([stopped, deadline]).then(
        () => process.exit(code),
        (err: Error) => {
          log.error('stop failed', { error: err.message });
          process.exit(code === 0 ? 1 : code);
        },
      );
    };
    const stop = (signal: string): void => {
      if (!stopping) log.info('stopping', { signal });
      shutdown(0);
    };
    const onFatal = (error: Error): void => {
      if (stopping) return;
      log.error('the agent can no longer serve and stops', { error: error.message });
      shutdown(1);
    };
    installLastResort(log, () => stopping, shutdown);
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));

    starting = Agent.start({
      storeUrl: opts.store,
      prefix: opts.prefix,
      publicIp: opts.publicIp,
      tunName: opts.tun,
      subnetFile: opts.subnetFile,
      ipMasq: opts.ipMasq !== false,
      ipMasqTool: opts.ipMasqTool,
      ipMasqResyncMs: opts.ipMasqResync * 1000,
      leaseTtlSeconds: opts.leaseTtl,
      storeWaitMs: opts.storeWait * 1000,
      nodeName: opts.nodeName ?? hostname(),
      vtepMac: opts.vtepMac,
      publicIpv6: opts.publicIpv6,
      batchSize: opts.batch,
      offload: opts.offload,
      ipipSegmentBatch: opts.ipipSegmentBatch === 'on',
      busyPollUs: opts.busyPoll,
      tunIo: opts.tunIo as TunIoMode,
      tunUso: opts.tunUso === 'on',
      sourcePorts: opts.sourcePorts,
      df: opts.df as DfMode,
      birdDir: opts.birdDir,
      log,
      onFatal,
    });
    const started = await starting;
    if (stopping) return; // a signal or a fatal error came while starting: shutdown() stops it
    const socketPath = opts.statusSocket ?? defaultStatusSocket(statusSocketName(opts.publicIp, opts.publicIpv6));
    server = await serveAgentApi(
      socketPath,
      {
        status: () => started.status(),
        trace: (filter, withBytes, send) => started.trace({ filter, withBytes, onJourney: send }),
      },
      { log },
    );
    metrics = opts.metrics === undefined ? undefined : await serveMetrics(opts.metrics.host, opts.metrics.port, () => started.status(), log);
  });
}
