import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  DEFAULT_PREFIX,
  configKey,
  formatLeaseAttrs,
  parseLeaseAttrs,
  parseSubnetKey,
  subnetKey,
} from '../../src/control/lease';
import { formatCidr, parseCidr, parseIPv4, parseMac } from '../../src/wire/address';

const test = suite('control: lease keys and values');

// Verbatim from FACTS.md (flannel's etcd layout).
const FLANNEL_KEY = '/coreos.com/network/subnets/10.17.52.0-24';
const FLANNEL_VALUE = '{"PublicIP":"192.168.64.3","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}';

test('subnetKey writes flannel keys; parseSubnetKey reads them back', () => {
  assert.is(DEFAULT_PREFIX, '/coreos.com/network');
  assert.is(subnetKey(DEFAULT_PREFIX, parseCidr('10.17.52.0/24')), FLANNEL_KEY);
  assert.is(subnetKey('/coreos.com/network/', parseCidr('10.17.1.0/24')), '/coreos.com/network/subnets/10.17.1.0-24');
  assert.is(configKey(DEFAULT_PREFIX), '/coreos.com/network/config');
  for (const text of ['10.17.1.0/24', '10.0.0.0/8', '10.17.0.4/30', '0.0.0.0/0', '255.255.255.255/32']) {
    const cidr = parseCidr(text);
    const back = parseSubnetKey(subnetKey('/x', cidr));
    assert.ok(back, text);
    assert.is(formatCidr(back), text);
  }
});

test('parseSubnetKey accepts a dual-stack key (flannel "&" form) and refuses non-subnets', () => {
  assert.is(formatCidr(parseSubnetKey('/coreos.com/network/subnets/10.17.1.0-24&fc00::-64')!), '10.17.1.0/24');
  for (const key of [
    '/coreos.com/network/config',
    '/coreos.com/network/subnets/10.17.1.0',
    '/coreos.com/network/subnets/10.17.1.0-33',
    '/coreos.com/network/subnets/10.17.1.5-24', // host bits: no lease is written like that
    '/coreos.com/network/subnets/300.17.1.0-24',
    '/coreos.com/network/subnets/1234.17.1.0-24',
    '/coreos.com/network/subnets/10.17.1.0-24-extra',
  ]) {
    assert.is(parseSubnetKey(key), undefined, key);
  }
});

test('parses flannel\'s lease value and writes it back byte for byte', () => {
  const attrs = parseLeaseAttrs(FLANNEL_VALUE);
  assert.equal(attrs, {
    publicIp: parseIPv4('192.168.64.3'),
    backendType: 'vxlan',
    backendData: { vni: 1, vtepMac: parseMac('c6:d2:32:6f:8f:44') },
  });
  assert.is(formatLeaseAttrs(attrs), FLANNEL_VALUE);
});

test('host-gw and ipip leases have no BackendData; BackendType omitted when empty (Go omitempty)', () => {
  const hostgw = '{"PublicIP":"192.0.2.7","BackendType":"host-gw"}';
  assert.equal(parseLeaseAttrs(hostgw), { publicIp: parseIPv4('192.0.2.7'), backendType: 'host-gw' });
  assert.is(formatLeaseAttrs(parseLeaseAttrs(hostgw)), hostgw);
  assert.is(formatLeaseAttrs({ publicIp: parseIPv4('192.0.2.7'), backendType: '' }), '{"PublicIP":"192.0.2.7"}');
  assert.equal(parseLeaseAttrs('{"PublicIP":"192.0.2.7"}'), { publicIp: parseIPv4('192.0.2.7'), backendType: '' });
});

test('unknown BackendData fields and modern flannel fields survive a re-write of BackendData', () => {
  // A newer flannel writes PublicIPv6 (null when unset) and may add backend fields we do not know.
  const value =
    '{"PublicIP":"198.51.100.4","PublicIPv6":null,"BackendType":"vxlan",' +
    '"BackendData":{"VNI":4096,"VtepMAC":"66:00:00:00:00:01","GBP":false,"Extra":{"a":[1,2]}}}';
  const attrs = parseLeaseAttrs(value);
  assert.is(attrs.backendData?.vni, 4096);
  assert.is(attrs.backendData?.vtepMac, 0x660000000001);
  assert.is(attrs.backendData?.GBP, false);
  assert.equal(attrs.backendData?.Extra, { a: [1, 2] });
  // Change the MAC, as a restarted node would, and write it again.
  attrs.backendData!.vtepMac = parseMac('66:00:00:00:00:02');
  assert.is(
    formatLeaseAttrs(attrs),
    '{"PublicIP":"198.51.100.4","BackendType":"vxlan","BackendData":{"VNI":4096,"VtepMAC":"66:00:00:00:00:02","GBP":false,"Extra":{"a":[1,2]}}}',
  );
});

test('malformed lease values are errors naming the field and value', () => {
  const cases: Array<[string, RegExp]> = [
    ['{"PublicIP":', /not valid JSON/],
    ['"192.0.2.1"', /must be a JSON object, got "192.0.2.1"/],
    ['{"BackendType":"vxlan"}', /PublicIP must be an IPv4 address string, got undefined/],
    ['{"PublicIP":"192.0.2.300"}', /PublicIP "192.0.2.300" is not an IPv4 address/],
    ['{"PublicIP":"192.0.2.1","BackendType":3}', /BackendType must be a string, got 3/],
    ['{"PublicIP":"192.0.2.1","BackendData":[1]}', /BackendData must be an object, got \[1\]/],
    ['{"PublicIP":"192.0.2.1","BackendData":{"VNI":"1"}}', /BackendData.VNI must be an integer from 0 to 16777215, got "1"/],
    ['{"PublicIP":"192.0.2.1","BackendData":{"VtepMAC":"c6:d2:32"}}', /BackendData.VtepMAC "c6:d2:32" is not a MAC address/],
    ['{"PublicIP":"192.0.2.1","VxtunNodeName":7}', /VxtunNodeName must be a non-empty string, got 7/],
    ['{"PublicIP":"192.0.2.1","VxtunNodeName":""}', /VxtunNodeName must be a non-empty string, got ""/],
  ];
  for (const [value, expected] of cases) assert.throws(() => parseLeaseAttrs(value), expected, value);
});


test('the node name rides at the top level as VxtunNodeName, after flannel\'s fields; absent when not given', () => {
  const value =
    '{"PublicIP":"192.0.2.1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"66:00:00:00:00:01"},"VxtunNodeName":"node-a"}';
  const attrs = parseLeaseAttrs(value);
  assert.is(attrs.nodeName, 'node-a');
  assert.is(formatLeaseAttrs(attrs), value);
  assert.is(parseLeaseAttrs('{"PublicIP":"192.0.2.1"}').nodeName, undefined);
  assert.not.match(formatLeaseAttrs({ publicIp: parseIPv4('192.0.2.1'), backendType: 'ipip' }), /VxtunNodeName/);
});

test.run();
