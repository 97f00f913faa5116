// How a trace prints VXLAN over the IPv6 underlay: the outer address and port as tcpdump writes them for IPv6
// (2001:db8::12.4789, not the ambiguous 2001:db8::12:4789), and the batch size of the IPv6 socket's send (it was
// printed as the IPv4 socket's batch, 0). Found writing docs/one-ping.md's IPv6 journey.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { PacketTracer } from '../../src/dataplane/journeys';
import { formatJourney } from '../../src/trace/format';
import type { Journey } from '../../src/trace/journey';
import { dualPair, echoRequest6, ip6 } from '../support/fake-nodes6';

const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

test('VXLAN over IPv6 in a trace: outer addr.port, and the IPv6 batch counted', async () => {
  const { a, b } = dualPair(6);
  a.engine.start();
  b.engine.start();
  const out: Journey[] = [];
  const inb: Journey[] = [];
  const tracer = (into: Journey[]): PacketTracer => ({ wants: () => true, withBytes: false, record: (j) => into.push(j) });
  a.engine.tracer = tracer(out);
  b.engine.tracer = tracer(inb);
  a.tun.inject(echoRequest6(ip6('fd00:10:244:1::5'), ip6('fd00:10:244:2::7')));
  await settle();
  assert.is(out.length, 1);
  const sent = formatJourney(out[0]!);
  assert.match(sent, /outer udp 2001:db8::11 > 2001:db8::12\.4789, 174 B/);
  assert.match(sent, /sent     .*batch of 1$/m);
  assert.is(inb.length, 1);
  assert.match(formatJourney(inb[0]!), 'received underlay 2001:db8::11 > 2001:db8::12.4789 vxlan vni');
  a.engine.stop?.();
  b.engine.stop?.();
});

test.run();
