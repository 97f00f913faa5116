// The bgp backend's network config: Calico's defaults, clear refusals, and `formatNetworkConfig` round trips.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type BgpBackendConfig, formatNetworkConfig, parseNetworkConfig } from '../../../src/control/network-config';
import { parseCidr, parseIPv4 } from '../../../src/wire/address';

const test = suite('control/bgp: network config');

function bgp(backend: string): BgpBackendConfig {
  const parsed = parseNetworkConfig(`{"Network":"10.60.0.0/16","Backend":${backend}}`).backend;
  assert.is(parsed.type, 'bgp');
  return parsed as BgpBackendConfig;
}

const CALICO_DEFAULTS: BgpBackendConfig = { type: 'bgp', as: 64512, encap: 'none', routeReflectors: [], gracefulRestart: 120, bfd: false };

test('defaults are Calico\'s: AS 64512, no encapsulation, full mesh, graceful restart 120 s, no BFD', () => {
  assert.equal(bgp('{"Type":"bgp"}'), CALICO_DEFAULTS);
});

test('every field, as the issue writes them', () => {
  assert.equal(
    bgp('{"Type":"bgp","AS":65001,"Encap":"ipip-crosssubnet","RouteReflectors":["192.0.2.2","192.0.2.3"],"GracefulRestart":30,"BFD":true}'),
    { type: 'bgp', as: 65001, encap: 'ipip-crosssubnet', routeReflectors: [parseIPv4('192.0.2.2'), parseIPv4('192.0.2.3')], gracefulRestart: 30, bfd: true },
  );
  assert.is(bgp('{"Type":"bgp","Encap":"ipip"}').encap, 'ipip');
  assert.is(bgp('{"Type":"bgp","GracefulRestart":0}').gracefulRestart, 0, '0 turns graceful restart off');
  assert.is(bgp('{"Type":"bgp","GracefulRestart":false}').gracefulRestart, 0, 'false too');
  assert.is(bgp('{"Type":"bgp","GracefulRestart":true}').gracefulRestart, 120, 'true is BIRD\'s default time');
  assert.is(bgp('{"type":"bgp","as":4200000000}').as, 4200000000, 'field names case-insensitive, 4-byte AS');
});

const rejected: Array<[string, RegExp]> = [
  ['{"Type":"bgp","AS":0}', /Backend\.AS must be an integer from 1 to 4294967294, got 0/],
  ['{"Type":"bgp","AS":"64512"}', /Backend\.AS must be an integer from 1 to 4294967294, got "64512"/],
  ['{"Type":"bgp","AS":23456}', /Backend\.AS 23456 is AS_TRANS \(RFC 6793\)/],
  ['{"Type":"bgp","Encap":"vxlan"}', /Backend\.Encap must be one of "none", "ipip", "ipip-crosssubnet", got "vxlan"/],
  ['{"Type":"bgp","Encap":"Always"}', /Backend\.Encap must be one of/],
  ['{"Type":"bgp","RouteReflectors":"192.0.2.2"}', /Backend\.RouteReflectors must be a list of IPv4 addresses, got "192\.0\.2\.2"/],
  ['{"Type":"bgp","RouteReflectors":["192.0.2.300"]}', /Backend\.RouteReflectors: "192\.0\.2\.300" is not an IPv4 address/],
  ['{"Type":"bgp","RouteReflectors":["192.0.2.2","192.0.2.2"]}', /Backend\.RouteReflectors names 192\.0\.2\.2 twice/],
  ['{"Type":"bgp","GracefulRestart":4096}', /Backend\.GracefulRestart \(seconds, 0 = off\) must be an integer from 0 to 4095, got 4096/],
  ['{"Type":"bgp","GracefulRestart":-1}', /GracefulRestart .* got -1/],
  ['{"Type":"bgp","BFD":"yes"}', /Backend\.BFD must be true or false, got "yes"/],
];

for (const [backend, expected] of rejected) {
  test(`refused: ${backend}`, () => {
    assert.throws(() => parseNetworkConfig(`{"Network":"10.60.0.0/16","Backend":${backend}}`), (err: Error) => {
      assert.match(err.message, /^network config: /);
      assert.match(err.message, expected);
      return true;
    });
  });
}

test('formatNetworkConfig writes only the given fields and round-trips', () => {
  const network = parseCidr('10.60.0.0/16');
  assert.is(formatNetworkConfig({ network, backend: { type: 'bgp' } }), '{"Network":"10.60.0.0/16","Backend":{"Type":"bgp"}}');
  const json = formatNetworkConfig({
    network,
    backend: { type: 'bgp', as: 65001, encap: 'ipip', routeReflectors: [parseIPv4('192.0.2.2')], gracefulRestart: 0, bfd: true },
  });
  assert.is(json, '{"Network":"10.60.0.0/16","Backend":{"Type":"bgp","AS":65001,"Encap":"ipip","RouteReflectors":["192.0.2.2"],"GracefulRestart":0,"BFD":true}}');
  assert.equal(parseNetworkConfig(json).backend, { type: 'bgp', as: 65001, encap: 'ipip', routeReflectors: [parseIPv4('192.0.2.2')], gracefulRestart: 0, bfd: true });
  assert.throws(() => formatNetworkConfig({ network, backend: { type: 'bgp', as: 23456 } }), /AS_TRANS/);
});

test.run();
