// A plain bird2 route reflector for the lab, in a node of its own: no vxtun agent, no lease, just BIRD reflecting the
// nodes' blocks between its clients (BIRD 2.0 user's guide, BGP "rr client"; Calico's route reflector is the same
// thing: a BIRD whose peers are `rr client`s). The nodes name it in the network config's RouteReflectors.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Lab, LabNode } from './topology';

export interface RouteReflectorOptions {
  /** The reflector's own address: its router id and session source. */
  address: string;
  as?: number;
  clients: readonly string[];
  /** Underlay device of the reflector's node (for `protocol direct`, so the clients' next hops resolve). */
  device?: string;
}

/**
 * The reflector's bird.conf: one passive session per client (`rr client`; the clients connect), import and export
 * everything, no kernel protocol (it forwards no traffic). Same input, same text.
 */
export function renderRouteReflectorConfig(options: RouteReflectorOptions): string {
  const as = options.as ?? 64512;
  const lines = [
    '# A plain bird2 route reflector for vxtun nodes (lab).',
    `router id ${options.address};`,
    'log stderr all;',
    'timeformat protocol iso long ms;',
    'protocol device { scan time 2; }',
    `protocol direct { ipv4; interface "${options.device ?? 'eth0'}"; }`,
    'template bgp clients {',
    `  local ${options.address} as ${as};`,
    '  rr client; passive on;',
    '  ipv4 { import all; export all; add paths on; };',
    '  graceful restart on;',
    '  connect delay time 2; connect retry time 5; error wait time 5,30;',
    '}',
  ];
  for (const client of options.clients) {
    lines.push(`protocol bgp Client_${client.replace(/\./g, '_')} from clients { neighbor ${client} as ${as}; }`);
  }
  return `${lines.join('\n')}\n`;
}

export interface RouteReflector {
  node: LabNode;
  process: ChildProcess;
  socket: string;
  config: string;
}

/** Writes the config into `dir` and starts `bird -f` in `node` (the lab stops it with the node's namespace). */
export function startRouteReflector(lab: Lab, node: LabNode, dir: string, options: RouteReflectorOptions): RouteReflector {
  mkdirSync(dir, { recursive: true });
  const config = join(dir, 'rr.conf');
  const socket = join(dir, 'rr.ctl');
  writeFileSync(config, renderRouteReflectorConfig(options));
  const process = lab.spawn(node, 'bird', ['-f', '-c', config, '-s', socket, '-P', join(dir, 'rr.pid')], { logFile: join(dir, 'rr.log') });
  return { node, process, socket, config };
}
