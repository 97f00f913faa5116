import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { consoleLogger } from '../../src/control/log';
import { UnderlayWatch } from '../../src/control/underlay-watch';
import { hostHasAddress } from '../../src/io/interfaces';

const test = suite('control: underlay watch');

test('the address going and coming back is logged once each way and shown in the state', () => {
  const lines: string[] = [];
  let present = true;
  const watch = new UnderlayWatch('192.0.2.11', consoleLogger('info', (l) => lines.push(l)), 60_000, () => present);
  try {
    watch.check();
    assert.equal(watch.state, { addressPresent: true });
    assert.is(lines.length, 0);
    present = false;
    watch.check();
    watch.check();
    assert.is(watch.state.addressPresent, false);
    assert.match(watch.state.problem ?? '', /192\.0\.2\.11 is on no interface of this host/);
    assert.is(lines.length, 1, lines.join(''));
    assert.match(lines[0], /^level=error msg="the underlay address 192\.0\.2\.11 is on no interface/);
    present = true;
    watch.check();
    watch.check();
    assert.equal(watch.state, { addressPresent: true });
    assert.is(lines.length, 2);
    assert.match(lines[1], /^level=info msg="the underlay address is back/);
  } finally {
    watch.stop();
  }
});

test('both underlays watched: the IPv6 one going is said with --public-ipv6, the IPv4 one untouched', () => {
  const lines: string[] = [];
  const gone = new Set<string>();
  const watch = new UnderlayWatch(['192.0.2.11', '2001:db8:1::11'], consoleLogger('info', (l) => lines.push(l)), 60_000, (a) => !gone.has(a));
  try {
    gone.add('2001:db8:1::11');
    watch.check();
    assert.is(watch.state.addressPresent, false);
    assert.match(watch.state.problem ?? '', /2001:db8:1::11 is on no interface.*--public-ipv6$/);
    assert.is(lines.length, 1);
    assert.match(lines[0]!, /publicIpv6=2001:db8:1::11/);
    gone.clear();
    watch.check();
    assert.equal(watch.state, { addressPresent: true });
  } finally {
    watch.stop();
  }
});

test('hostHasAddress finds loopback in both families, in any IPv6 spelling', () => {
  assert.ok(hostHasAddress('127.0.0.1'));
  assert.not.ok(hostHasAddress('192.0.2.254'));
  if (hostHasAddress('::1')) assert.ok(hostHasAddress('0:0:0:0:0:0:0:1'));
  assert.not.ok(hostHasAddress('2001:db8:ffff::1'));
});

test('a lookup that throws is logged, never thrown', () => {
  const lines: string[] = [];
  const watch = new UnderlayWatch('192.0.2.11', consoleLogger('info', (l) => lines.push(l)), 60_000, () => {
    throw new Error('EMFILE');
  });
  try {
    watch.check();
    assert.equal(watch.state, { addressPresent: true });
    assert.match(lines[0], /could not list the host interfaces.*EMFILE/);
  } finally {
    watch.stop();
  }
});

test.run();
