// The bgp backend's part of the agent's Prometheus text: the same facts `vxtun status` prints from
// `birdc show protocols all` (session state, routes per session, readiness, BIRD up and its restarts).
import type { BgpStatus } from './bgp-node';

function escape(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** Prometheus text exposition (0.0.4) lines, each family with HELP and TYPE; ends without a newline. */
export function formatBgpMetrics(bgp: BgpStatus): string {
  const out: string[] = [];
  const family = (name: string, type: 'gauge' | 'counter', help: string, samples: string[]): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...samples);
  };
  const peer = (p: BgpStatus['peers'][number]): string => `peer="${escape(p.name)}",neighbor="${escape(p.address ?? '')}"`;
  family('vxtun_bgp_session_established', 'gauge', 'BGP session Established (1) or not (0), per peer, as birdc show protocols says.',
    bgp.peers.map((p) => `vxtun_bgp_session_established{${peer(p)},session="${escape(p.session)}"} ${p.session === 'Established' ? 1 : 0}`));
  family('vxtun_bgp_routes', 'gauge', 'Routes imported from and exported to each BGP peer.',
    bgp.peers.flatMap((p) => [
      `vxtun_bgp_routes{${peer(p)},direction="imported"} ${p.routes?.imported ?? 0}`,
      `vxtun_bgp_routes{${peer(p)},direction="exported"} ${p.routes?.exported ?? 0}`,
    ]));
  family('vxtun_bgp_ready', 'gauge', "Calico's readiness: every peer Established during start-up, at least one after.", [`vxtun_bgp_ready ${bgp.ready ? 1 : 0}`]);
  family('vxtun_bird_up', 'gauge', 'The agent\'s BIRD process is running.', [`vxtun_bird_up ${bgp.bird.running ? 1 : 0}`]);
  family('vxtun_bird_restarts_total', 'counter', 'Times the agent restarted BIRD after it died.', [`vxtun_bird_restarts_total ${bgp.bird.restarts}`]);
  return out.join('\n');
}

/** The BGP section of `vxtun status`, laid out as `birdc show protocols` prints its table. */
export function formatBgpStatus(bgp: BgpStatus): string[] {
  const mesh = bgp.routeReflectors.length === 0 ? 'full mesh' : `route reflectors ${bgp.routeReflectors.join(', ')}`;
  const gr = bgp.gracefulRestart > 0 ? `graceful restart ${bgp.gracefulRestart}s` : 'graceful restart off';
  const bird = bgp.bird.running ? `bird pid ${bgp.bird.pid ?? '?'}` : 'bird NOT RUNNING';
  const readiness = bgp.ready ? 'ready' : bgp.startupDone ? 'NOT READY (no peer established)' : 'NOT READY (start-up: waiting for every peer)';
  const lines = [
    `bgp      AS ${bgp.as}, encap ${bgp.encap}, ${mesh}, ${gr}, bfd ${bgp.bfd ? 'on' : 'off'}; ${bird}, restarts ${bgp.bird.restarts}; ${readiness}`,
  ];
  if (bgp.bird.lastError) lines.push(`  ! birdc: ${bgp.bird.lastError}`);
  const header = ['Name', 'State', 'Since', 'Info'];
  const rows = bgp.peers.map((p) => [p.name, p.state, p.since, p.info]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => `  ${cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')}`.trimEnd();
  lines.push('', `bgp peers (${bgp.peers.length}), routes imported ${bgp.routes.imported}, exported ${bgp.routes.exported}`, line(header));
  for (const p of bgp.peers) {
    lines.push(line([p.name, p.state, p.since, p.info]));
    if (p.session !== 'Established' && p.hint) lines.push(`    ! ${p.hint}`);
  }
  return lines;
}
