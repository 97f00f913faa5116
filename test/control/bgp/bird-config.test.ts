// renderBirdConfig: golden files (UPDATE_GOLDEN=1 rewrites them; review the diff), every golden file accepted by
// `bird -p` where bird2 is installed, and the session rules (one passive side per pair, reflectors) as tables.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type BirdConfigInput, birdPeers, leasedBlocks, renderBirdConfig } from '../../../src/control/bgp/bird-config';
import type { Lease } from '../../../src/control/lease';
import { type BgpBackendConfig, parseNetworkConfig } from '../../../src/control/network-config';
import { formatCidr, formatIPv4, parseCidr, parseIPv4 } from '../../../src/wire/address';

const test = suite('control/bgp: BIRD config');
const GOLDEN = join(__dirname, 'golden');
const HAVE_BIRD = spawnSync('bird', ['--version']).status === 0;

function lease(subnet: string, ip: string, backendType = 'bgp'): Lease {
  return { subnet: parseCidr(subnet), attrs: { publicIp: parseIPv4(ip), backendType } };
}

const LEASES = [
  lease('10.60.1.0/24', '192.0.2.11'),
  lease('10.60.2.0/24', '192.0.2.12'),
  lease('10.60.3.0/24', '198.51.100.13'),
  lease('10.60.9.0/24', '192.0.2.19', 'vxlan'), // another backend: never a peer
];

function input(backend: string, own = LEASES[1]!): BirdConfigInput {
  return {
    lease: own,
    config: parseNetworkConfig(`{"Network":"10.60.0.0/16","Backend":${backend}}`),
    leases: LEASES,
    underlay: { device: 'eth0', subnet: parseCidr('192.0.2.0/24') },
  };
}

const cases: Array<[string, BirdConfigInput]> = [
  ['mesh-none', input('{"Type":"bgp"}')],
  ['mesh-ipip', input('{"Type":"bgp","Encap":"ipip"}')],
  ['mesh-crosssubnet-bfd-no-gr', input('{"Type":"bgp","AS":65001,"Encap":"ipip-crosssubnet","GracefulRestart":0,"BFD":true}')],
  ['rr-client', input('{"Type":"bgp","RouteReflectors":["192.0.2.2"]}')],
  ['rr-server', input('{"Type":"bgp","RouteReflectors":["192.0.2.11","192.0.2.2"]}', LEASES[0])],
  ['alone', { ...input('{"Type":"bgp"}'), leases: [LEASES[1]!] }],
];

for (const [name, given] of cases) {
  test(`golden: ${name}`, () => {
    const text = renderBirdConfig(given);
    const file = join(GOLDEN, `${name}.conf`);
    if (process.env.UPDATE_GOLDEN === '1' || !existsSync(file)) writeFileSync(file, text);
    assert.fixture(text, readFileSync(file, 'utf8'));
    assert.is(renderBirdConfig(given), text, 'same input, same bytes');
    if (HAVE_BIRD) {
      const dir = mkdtempSync(join(tmpdir(), 'vxtun-bird-'));
      try {
        writeFileSync(join(dir, 'bird.conf'), text);
        const check = spawnSync('bird', ['-p', '-c', join(dir, 'bird.conf')], { encoding: 'utf8' });
        assert.is(check.status, 0, `bird -p refused ${name}: ${check.stderr}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  });
}

test('our block is announced alone and never imported; imports are lease-length blocks of the network', () => {
  const text = renderBirdConfig(input('{"Type":"bgp"}'));
  assert.match(text, /route 10\.60\.2\.0\/24 blackhole;/);
  assert.match(text, /filter vxtun_export \{\n  if net = 10\.60\.2\.0\/24 then accept;\n  if net ~ 10\.60\.2\.0\/24 then reject;\n  reject;/);
  assert.match(text, /filter vxtun_import \{\n  if net = 10\.60\.2\.0\/24 then reject;\n  if vxtun_leased_block\(\) then accept;\n  reject;/);
  assert.match(
    text,
    /function vxtun_leased_block\(\) \{\n  if net = 10\.60\.1\.0\/24 && bgp_next_hop = 192\.0\.2\.11 then return true;\n  if net = 10\.60\.3\.0\/24 && bgp_next_hop = 198\.51\.100\.13 then return true;\n  return false;\n\}/,
  );
  assert.match(text, /router id 192\.0\.2\.12;/);
  assert.match(text, /local 192\.0\.2\.12 as 64512;/);
  assert.match(text, /connect delay time 2; connect retry time 5; error wait time 5,30;/);
  assert.not.match(text, /192\.0\.2\.19/, 'a vxlan lease is no peer');
});

test('imports: each other bgp lease block pinned to its PublicIP; ours, other backends, off-network and odd lengths never', () => {
  const config = parseNetworkConfig('{"Network":"10.60.0.0/16","Backend":{"Type":"bgp"}}');
  const own = LEASES[1]!;
  const rows = (leases: Lease[]): string[] =>
    leasedBlocks(own, config, leases).map((b) => `${formatCidr(b.subnet)} ${formatIPv4(b.publicIp)}`);
  assert.equal(rows(LEASES), ['10.60.1.0/24 192.0.2.11', '10.60.3.0/24 198.51.100.13']);
  assert.equal(rows([...LEASES, lease('10.60.1.0/24', '192.0.2.11')]), ['10.60.1.0/24 192.0.2.11', '10.60.3.0/24 198.51.100.13'], 'duplicates once');
  assert.equal(rows([lease('10.60.2.0/24', '192.0.2.66')]), [], 'our block under another address');
  assert.equal(rows([lease('10.60.7.0/24', '192.0.2.12')]), [], 'another block under our address');
  assert.equal(rows([lease('10.61.1.0/24', '192.0.2.66'), lease('10.60.4.0/25', '192.0.2.67')]), [], 'off the network or not lease length');
  const text = renderBirdConfig({ ...input('{"Type":"bgp"}'), leases: [own] });
  assert.match(text, /function vxtun_leased_block\(\) \{\n  return false;\n\}/, 'alone: nothing imported');
});

test('full mesh: one session per other bgp node, exactly one passive side per pair, the higher address connects', () => {
  const backend = parseNetworkConfig('{"Network":"10.60.0.0/16","Backend":{"Type":"bgp"}}').backend as BgpBackendConfig;
  const bgpNodes = LEASES.filter((l) => l.attrs.backendType === 'bgp');
  for (const a of bgpNodes) {
    const peers = birdPeers(a.attrs.publicIp, backend, [...LEASES, a]); // a duplicate of ourselves changes nothing
    assert.is(peers.length, bgpNodes.length - 1);
    for (const p of peers) {
      const back = birdPeers(p.address, backend, LEASES).find((q) => q.address === a.attrs.publicIp)!;
      assert.is(p.passive !== back.passive, true, `${p.name}: one side passive`);
      assert.is(p.passive, p.address > a.attrs.publicIp);
    }
  }
});

test('route reflectors: clients peer with the reflectors only; a reflector serves the others as rr clients', () => {
  const backend = parseNetworkConfig('{"Network":"10.60.0.0/16","Backend":{"Type":"bgp","RouteReflectors":["192.0.2.11","192.0.2.2"]}}').backend as BgpBackendConfig;
  assert.equal(birdPeers(parseIPv4('192.0.2.12'), backend, LEASES).map((p) => [p.name, p.passive, p.rrClient]), [
    ['RR_192_0_2_2', false, false],
    ['RR_192_0_2_11', false, false],
  ]);
  assert.equal(birdPeers(parseIPv4('192.0.2.11'), backend, LEASES).map((p) => [p.name, p.passive, p.rrClient]), [
    ['Mesh_192_0_2_2', false, false],
    ['Client_192_0_2_12', true, true],
    ['Client_198_51_100_13', true, true],
  ]);
});

test('refusals: not bgp, a lease outside the network or of another length', () => {
  assert.throws(() => renderBirdConfig({ ...input('{"Type":"bgp"}'), config: parseNetworkConfig('{"Network":"10.60.0.0/16","Backend":{"Type":"vxlan"}}') }), /needs a bgp backend, got vxlan/);
  assert.throws(() => renderBirdConfig(input('{"Type":"bgp"}', lease('10.61.2.0/24', '192.0.2.12'))), /our lease 10\.61\.2\.0\/24 is not a \/24 block of the network 10\.60\.0\.0\/16/);
  assert.throws(() => renderBirdConfig(input('{"Type":"bgp"}', lease('10.60.2.0/25', '192.0.2.12'))), /not a \/24 block/);
});

test.run();
