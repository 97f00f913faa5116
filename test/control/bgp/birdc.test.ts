// Reading BIRD: `show protocols all` as bird2 2.0.12 prints it (captured from the lab), `ip -json route` for BIRD's
// kernel routes, and the status / metrics text made from them.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { formatBgpMetrics, formatBgpStatus } from '../../../src/control/bgp/bgp-metrics';
import { type BgpStatus, hintFor } from '../../../src/control/bgp/bgp-node';
import { type IpCommand, flushBirdRoutes, parseBirdRoutes } from '../../../src/control/bgp/bird-routes';
import { parseProtocols } from '../../../src/control/bgp/birdc';
import { formatCidr, formatIPv4, parseCidr } from '../../../src/wire/address';

const test = suite('control/bgp: birdc and kernel routes');

// Trimmed from a real `birdc show protocols all` of node 1 (n2 up, n3 stopped).
const SHOW_PROTOCOLS_ALL = `Name       Proto      Table      State  Since         Info
vxtun_block Static     master4    up     2026-11-29 22:36:27.241  
  Channel ipv4
    State:          UP
    Routes:         1 imported, 0 exported, 1 preferred

vxtun_ipip_pipe Pipe       ---        up     2026-11-29 22:36:27.241  master4 <=> vxtun_ipip
  Channel main
    Table:          master4
  Routes:         0 imported, 1 exported

Mesh_192_0_2_12 BGP        ---        up     2026-11-29 22:36:29.402  Established   
  BGP state:          Established
    Neighbor address: 192.0.2.12
    Neighbor AS:      64512
    Local capabilities
      Graceful restart
        Restart time: 120
    Hold timer:       192.709/240
  Channel ipv4
    State:          UP
    Routes:         1 imported, 1 exported, 1 preferred
    Route change stats:     received   rejected   filtered    ignored   accepted
      Import updates:              1          0          0          0          1

Mesh_192_0_2_13 BGP        ---        start  2026-11-29 22:36:34.569  Passive       Received: Administrative shutdown
  BGP state:          Passive
    Neighbor address: 192.0.2.13
    Neighbor AS:      64512
    Local AS:         64512
    Last error:       Received: Administrative shutdown
`;

test('parseProtocols: name, proto, state, since (with ms), info, and the BGP details', () => {
  const protocols = parseProtocols(SHOW_PROTOCOLS_ALL);
  assert.equal(protocols.map((p) => p.name), ['vxtun_block', 'vxtun_ipip_pipe', 'Mesh_192_0_2_12', 'Mesh_192_0_2_13']);
  const up = protocols[2]!;
  assert.equal(
    { proto: up.proto, state: up.state, since: up.since, info: up.info, bgpState: up.bgpState, neighbor: up.neighbor, routes: up.routes, lastError: up.lastError },
    { proto: 'BGP', state: 'up', since: '2026-11-29 22:36:29.402', info: 'Established', bgpState: 'Established', neighbor: '192.0.2.12', routes: { imported: 1, exported: 1, preferred: 1 }, lastError: undefined },
  );
  const down = protocols[3]!;
  assert.is(down.state, 'start');
  assert.is(down.info, 'Passive  Received: Administrative shutdown');
  assert.is(down.lastError, 'Received: Administrative shutdown');
  assert.is(down.routes, undefined);
  assert.equal(protocols[1]!.routes, { imported: 0, exported: 1, preferred: 0 }, 'pipe routes line without preferred');
  assert.equal(parseProtocols(''), []);
  assert.equal(parseProtocols('garbage\n  indented: orphan\n'), []);
});

test('hintFor: what to check, from BIRD\'s reason and state', () => {
  const [, , , down] = parseProtocols(SHOW_PROTOCOLS_ALL);
  assert.match(hintFor(down!), /peer stopped its BGP/);
  assert.match(hintFor({ ...down!, lastError: 'Socket: Connection refused' }), /nothing listens on 192\.0\.2\.13:179/);
  assert.match(hintFor({ ...down!, lastError: 'Error: Hold timer expired' }), /stopped answering.*BFD/);
  assert.match(hintFor({ ...down!, lastError: 'Error: Bad peer AS: 64513' }), /same AS on every node/);
  assert.match(hintFor({ ...down!, lastError: undefined }), /waiting for 192\.0\.2\.13 to connect/);
});

test('parseBirdRoutes: gateways by table, blackholes and routes outside the network left out, multipath first hop', () => {
  const json = JSON.stringify([
    { dst: '10.60.2.0/24', gateway: '192.0.2.12', dev: 'eth0', protocol: 'bird', metric: 32, flags: [] },
    { type: 'blackhole', dst: '10.60.1.0/24', protocol: 'bird', metric: 32, flags: [] },
    { dst: '10.60.3.0/24', gateway: '198.51.100.13', dev: 'eth0', table: '201', protocol: 'bird', flags: [] },
    { dst: '10.60.4.0/24', table: '201', nexthops: [{ gateway: '192.0.2.14', dev: 'eth0' }, { gateway: '192.0.2.15', dev: 'eth0' }] },
    { dst: '172.16.0.0/16', gateway: '192.0.2.1', dev: 'eth0', protocol: 'bird' },
    { dst: '10.60.5.0/24', gateway: '192.0.2.15', dev: 'eth0', table: '202' },
  ]);
  const routes = parseBirdRoutes(json, parseCidr('10.60.0.0/16'), 201);
  const show = (r: { subnet: { address: number; prefixLength: number }; gateway: number }) => `${formatCidr(r.subnet)} via ${formatIPv4(r.gateway)}`;
  assert.equal(routes.main.map(show), ['10.60.2.0/24 via 192.0.2.12']);
  assert.equal(routes.ipip.map(show), ['10.60.3.0/24 via 198.51.100.13', '10.60.4.0/24 via 192.0.2.14']);
  assert.equal(parseBirdRoutes('', parseCidr('10.60.0.0/16'), 201), { main: [], ipip: [] });
});

/** `ip` as iproute2 6.1 answers: routes per table, and the error of a table nobody created. */
function fakeIp(tables: Record<string, object[]>, calls: string[][]): IpCommand {
  return async (args) => {
    calls.push(args);
    const table = args[args.indexOf('table') + 1]!;
    if (args[0] === '-json') {
      if (tables[table] === undefined) {
        throw Object.assign(new Error(`Command failed: ip ${args.join(' ')}`), { stderr: 'Error: ipv4: FIB table does not exist.\nDump terminated\n' });
      }
      return { stdout: JSON.stringify(tables[table]) };
    }
    return { stdout: '' };
  };
}

test('flushBirdRoutes: a table that does not exist (encap none never makes one) has nothing to delete', async () => {
  const calls: string[][] = [];
  const ip = fakeIp({ main: [{ dst: '10.60.2.0/24', gateway: '192.0.2.12' }, { type: 'blackhole', dst: '10.60.1.0/24' }] }, calls);
  assert.is(await flushBirdRoutes(parseCidr('10.60.0.0/16'), 201, ip), 2);
  assert.equal(calls.filter((a) => a[0] === 'route').map((a) => a.join(' ')), [
    'route del 10.60.2.0/24 table main proto bird',
    'route del blackhole 10.60.1.0/24 table main proto bird',
  ]);
  assert.is(await flushBirdRoutes(parseCidr('10.60.0.0/16'), 201, fakeIp({}, [])), 0);
});

test('flushBirdRoutes: other failures of `ip` still fail', async () => {
  const ip: IpCommand = async () => {
    throw Object.assign(new Error('Command failed: ip -json route show'), { stderr: 'RTNETLINK answers: Operation not permitted\n' });
  };
  try {
    await flushBirdRoutes(parseCidr('10.60.0.0/16'), 201, ip);
    assert.unreachable('should have thrown');
  } catch (err) {
    assert.match((err as Error).message, 'Command failed');
  }
});

const STATUS: BgpStatus = {
  as: 64512, encap: 'none', routeReflectors: [], gracefulRestart: 120, bfd: false,
  bird: { running: true, pid: 4242, restarts: 1, config: '/run/vxtun/bird-192.0.2.11/bird.conf', socket: '/run/vxtun/bird-192.0.2.11/bird.ctl' },
  peers: [
    { name: 'Mesh_192_0_2_12', address: '192.0.2.12', state: 'up', session: 'Established', since: '2026-11-29 22:36:29.402', info: 'Established', routes: { imported: 1, exported: 1, preferred: 1 } },
    { name: 'Mesh_192_0_2_13', address: '192.0.2.13', state: 'start', session: 'Active', since: '2026-11-29 22:36:34.569', info: 'Active  Socket: Connection refused', lastError: 'Socket: Connection refused', hint: 'nothing listens on 192.0.2.13:179: is its vxtun agent (and bird) running?' },
  ],
  routes: { imported: 1, exported: 1 }, ready: true, startupDone: true, kernelTable: 201,
};

test('formatBgpStatus: birdc\'s columns, the reason and the hint of a peer that is down', () => {
  const text = formatBgpStatus(STATUS).join('\n');
  assert.match(text, /^bgp      AS 64512, encap none, full mesh, graceful restart 120s, bfd off; bird pid 4242, restarts 1; ready$/m);
  assert.match(text, /^  Name {13}State  Since {20}Info$/m);
  assert.match(text, /^  Mesh_192_0_2_12  up     2026-11-29 22:36:29\.402  Established$/m);
  assert.match(text, /^  Mesh_192_0_2_13  start  2026-11-29 22:36:34\.569  Active  Socket: Connection refused\n    ! nothing listens on 192\.0\.2\.13:179/m);
  assert.match(formatBgpStatus({ ...STATUS, ready: false, startupDone: false }).join('\n'), /NOT READY \(start-up: waiting for every peer\)/);
});

test('formatBgpMetrics: sessions, routes, readiness, BIRD up and restarts', () => {
  const text = formatBgpMetrics(STATUS);
  assert.match(text, /^vxtun_bgp_session_established\{peer="Mesh_192_0_2_12",neighbor="192\.0\.2\.12",session="Established"\} 1$/m);
  assert.match(text, /^vxtun_bgp_session_established\{peer="Mesh_192_0_2_13",neighbor="192\.0\.2\.13",session="Active"\} 0$/m);
  assert.match(text, /^vxtun_bgp_routes\{peer="Mesh_192_0_2_12",neighbor="192\.0\.2\.12",direction="imported"\} 1$/m);
  assert.match(text, /^vxtun_bgp_ready 1$/m);
  assert.match(text, /^vxtun_bird_up 1$/m);
  assert.match(text, /^# TYPE vxtun_bird_restarts_total counter\nvxtun_bird_restarts_total 1$/m);
});

test.run();
