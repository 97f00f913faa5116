// The agent's counters in Prometheus' text exposition format (version 0.0.4), served on --metrics ADDR:PORT.
// Written by hand: a handful of counters and gauges does not need a client library.
import { type Server, createServer } from 'node:http';
import type { Socket } from 'node:net';
import type { AgentStatus } from './agent';
import { describeFailure } from './api-error';
import { type Logger, nullLogger } from './log';
import { formatBgpMetrics } from './bgp/bgp-metrics';
import {
  type ConnectionLimits,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  REQUEST_TIMEOUT_ANSWER,
  limitConnections,
  limitedServerOptions,
} from './status-server';

interface FlowJson {
  packets: number;
  bytes: number;
}

function line(name: string, labels: Record<string, string>, value: number): string {
  const text = Object.entries(labels)
    .map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`)
    .join(',');
  return `${name}${text ? `{${text}}` : ''} ${value}`;
}

/** What the store says that the agent will not use: alert on either being non-zero. */
function storeHealth(s: AgentStatus): string[] {
  return [
    '# HELP vxtun_refused_leases Leases under subnets/ kept out of the tables (vxtun status lists them and why).',
    '# TYPE vxtun_refused_leases gauge',
    line('vxtun_refused_leases', {}, (s.refusedLeases ?? []).length),
    '# HELP vxtun_config_mismatch 1 while the stored network config differs from the one the agent runs with.',
    '# TYPE vxtun_config_mismatch gauge',
    line('vxtun_config_mismatch', {}, s.configMismatch === undefined ? 0 : 1),
  ];
}

/**
 * The IPv6 tables' sizes, present only when the agent carries IPv6: routes6 (`ip -6 route`), neighbors6 and fdb6.
 * IPv6 drops need nothing here: every stage/reason the engine counts (IPv6 stages included) is a vxtun_drops_total
 * sample.
 */
function tables6(s: AgentStatus): string[] {
  if (s.routes6 === undefined) return [];
  return [
    '# HELP vxtun_routes6 IPv6 routes to other nodes.',
    '# TYPE vxtun_routes6 gauge',
    line('vxtun_routes6', {}, s.routes6.length),
    '# HELP vxtun_neighbors6 IPv6 neighbor entries (remote v6 VTEP addresses to MACs).',
    '# TYPE vxtun_neighbors6 gauge',
    line('vxtun_neighbors6', {}, (s.neighbors6 ?? []).length),
    '# HELP vxtun_fdb6 FDB entries whose destination is an IPv6 underlay address.',
    '# TYPE vxtun_fdb6 gauge',
    line('vxtun_fdb6', {}, (s.fdb6 ?? []).length),
  ];
}

export function formatMetrics(s: AgentStatus): string {
  const bgp = s.bgp ? `${formatBgpMetrics(s.bgp)}\n` : '';
  if (s.counters === undefined || s.pool === undefined) {
    const v6 = tables6(s);
    return `# HELP vxtun_routes Routes to other nodes.\n# TYPE vxtun_routes gauge\nvxtun_routes ${s.routes.length}\n${v6.length > 0 ? `${v6.join('\n')}\n` : ''}${storeHealth(s).join('\n')}\n${bgp}`;
  }
  const pool = s.pool;
  const c = s.counters as Record<string, unknown> & { drops: Record<string, number>; meanBatch: { outbound: number; inbound: number } };
  const out: string[] = [];
  const family = (name: string, type: 'counter' | 'gauge', help: string, samples: string[]): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...samples);
  };
  const doors: [string, string][] = [['tunIn', 'tun_in'], ['underlayOut', 'underlay_out'], ['underlayIn', 'underlay_in'], ['tunOut', 'tun_out']];
  family('vxtun_packets_total', 'counter', 'Packets through each door of the data plane.', doors.map(([k, door]) => line('vxtun_packets_total', { door }, (c[k] as FlowJson).packets)));
  family('vxtun_bytes_total', 'counter', 'Bytes through each door of the data plane.', doors.map(([k, door]) => line('vxtun_bytes_total', { door }, (c[k] as FlowJson).bytes)));
  family('vxtun_drops_total', 'counter', 'Packets dropped, by stage and reason.', Object.entries(c.drops).map(([key, n]) => {
    const [stage, reason] = key.split('/');
    return line('vxtun_drops_total', { stage, reason }, n);
  }));
  family('vxtun_arp_replies_total', 'counter', 'ARP requests for our VTEP address answered.', [line('vxtun_arp_replies_total', {}, c.arpReplies as number)]);
  family('vxtun_icmp_errors_total', 'counter', 'ICMP errors sent back into the TUN.', [line('vxtun_icmp_errors_total', {}, c.icmpErrors as number)]);
  family('vxtun_gso_fallbacks_total', 'counter', 'UDP GSO sends the kernel refused for their route; the segments went one by one.', [line('vxtun_gso_fallbacks_total', {}, (c.gsoFallbacks as number | undefined) ?? 0)]);
  family('vxtun_gso_fallback_peers', 'gauge', 'Underlay peers sending without GSO until their next retry.', [line('vxtun_gso_fallback_peers', {}, (c.gsoFallbackPeers as number | undefined) ?? 0)]);
  family('vxtun_batch_mean_packets', 'gauge', 'Mean packets per I/O batch.', [
    line('vxtun_batch_mean_packets', { direction: 'outbound' }, c.meanBatch.outbound),
    line('vxtun_batch_mean_packets', { direction: 'inbound' }, c.meanBatch.inbound),
  ]);
  family('vxtun_pool_slots', 'gauge', 'Buffer pool slots.', [
    line('vxtun_pool_slots', { state: 'capacity' }, pool.capacity),
    line('vxtun_pool_slots', { state: 'in_use' }, pool.inUse),
    line('vxtun_pool_slots', { state: 'lowest_free' }, pool.lowWater),
  ]);
  family('vxtun_routes', 'gauge', 'Routes to other nodes.', [line('vxtun_routes', {}, s.routes.length)]);
  out.push(...tables6(s));
  family('vxtun_store_connected', 'gauge', '1 while the store is reachable.', [line('vxtun_store_connected', {}, s.storeConnected ? 1 : 0)]);
  out.push(...storeHealth(s));
  return `${out.join('\n')}\n${bgp}`;
}

/**
 * Serves GET /metrics on HOST:PORT. A scrape that fails (status() or formatting throws) is answered 500 with the
 * reason as text and logged; the agent goes on. The server does not hold the process. Bounded like the status socket:
 * at most 32 sockets, a request complete within 5 s, idle keep-alive sockets closed after a second.
 */
export async function serveMetrics(
  host: string,
  port: number,
  status: () => AgentStatus,
  log: Logger = nullLogger,
  limits: ConnectionLimits = { maxConnections: DEFAULT_MAX_CONNECTIONS, requestTimeoutMs: DEFAULT_REQUEST_TIMEOUT_MS },
): Promise<Server> {
  const server = createServer(limitedServerOptions(limits), (req, res) => {
    try {
      if (req.url !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('try /metrics\n');
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { 'content-type': 'text/plain' }).end('only GET /metrics is served\n');
        return;
      }
      const body = formatMetrics(status());
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(body);
    } catch (err) {
      const { message } = describeFailure(err);
      log.error('metrics scrape failed', { error: message });
      if (res.headersSent) res.destroy();
      else res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics unavailable: ${message}\n`);
    }
  });
  server.on('clientError', (err: Error & { code?: string }, socket: Socket) => {
    if (err.code === 'ECONNRESET' || !socket.writable) socket.destroy();
    else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') socket.end(REQUEST_TIMEOUT_ANSWER);
    else socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
  });
  limitConnections(server, limits, log, 'metrics server');
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, host, resolve));
  server.on('error', (err) => log.error('metrics server failed', { error: err.message }));
  server.unref();
  return server;
}
