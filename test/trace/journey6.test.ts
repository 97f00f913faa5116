// IPv6 packets traced through the engine (over the fakes) as IPv4 ones are: journeys, their text, their pcap.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PacketTracer } from '../../src/dataplane/journeys';
import { formatJourney } from '../../src/trace/format';
import { type Journey, type TraceFilter, filterMatches } from '../../src/trace/journey';
import { writeJourney } from '../../src/trace/journey-pcap';
import { LINKTYPE_RAW, PcapWriter } from '../../src/trace/pcap';
import { type DualNode, dualPair, echoRequest6, ip6 } from '../support/fake-nodes6';
import { echoRequest, ip } from '../support/packets';

async function settle(): Promise<void> {
  for (let turn = 0; turn < 200; turn++) await new Promise((resolve) => setImmediate(resolve));
}

function trace(node: DualNode, filter: TraceFilter = {}): Journey[] {
  const journeys: Journey[] = [];
  const tracer: PacketTracer = { wants: (buf, off, len) => filterMatches(filter, buf, off, len), withBytes: true, record: (j) => journeys.push(j) };
  node.engine.tracer = tracer;
  return journeys;
}

for (const over of [4, 6] as const) {
  test(`an IPv6 ping over the IPv${over} underlay, traced out of A and into B`, async () => {
    const { a, b } = dualPair(over);
    a.engine.start();
    b.engine.start();
    const out = trace(a);
    const inb = trace(b);
    a.tun.inject(echoRequest6(ip6('fd00:10:244:1::5'), ip6('fd00:10:244:2::7')));
    await settle();
    assert.is(out.length, 1);
    const j = out[0];
    assert.is(j.verdict, 'sent');
    assert.equal(j.route, { subnet: 'fd00:10:244:2::/64', via: 'fd00:10:244:2::', encap: 'vxlan' });
    assert.equal(j.neighbor, { address: 'fd00:10:244:2::', mac: '02:00:00:00:06:02' });
    const dst = over === 6 ? '2001:db8::12' : '192.0.2.12';
    assert.equal(j.fdb, { mac: '02:00:00:00:06:02', dst });
    assert.is(j.outer!.dst, dst);
    assert.is(j.outer!.src, over === 6 ? '2001:db8::11' : '192.0.2.11');
    assert.is(j.inner!.family, 6);
    assert.is(j.inner!.icmpType, 128);
    const text = formatJourney(j);
    assert.match(text, 'OUT fd00:10:244:1::5 > fd00:10:244:2::7 ICMPv6 echo request, 104 B, hlim 64');
    assert.match(text, 'route    fd00:10:244:2::/64 via fd00:10:244:2:: onlink (vxlan)');
    assert.match(text, `fdb      02:00:00:00:06:02 dst ${dst}`);
    assert.match(text, 'eth 02:00:00:00:06:01 > 02:00:00:00:06:02');
    assert.is(inb.length, 1);
    assert.is(inb[0].verdict, 'delivered');
    assert.is(inb[0].from, `underlay ${over === 6 ? '2001:db8::11' : '192.0.2.11'}`);
    assert.is(inb[0].inner!.src, 'fd00:10:244:1::5');

    // The pcap shows inner and outer packets as on the wire: tshark reads the outer family and the inner ICMPv6.
    const dir = mkdtempSync(join(tmpdir(), 'vxt-journey6-'));
    try {
      const path = join(dir, 'j.pcap');
      const pcap = PcapWriter.open(path, LINKTYPE_RAW);
      writeJourney(pcap, j);
      writeJourney(pcap, inb[0]);
      pcap.close();
      const out = execFileSync('/usr/bin/tshark', ['-n', '-r', path, '-o', 'udp.check_checksum:TRUE', '-T', 'fields', '-E', 'occurrence=a', '-E', 'aggregator=,', '-e', 'ip.src', '-e', 'ipv6.src', '-e', 'icmpv6.type', '-e', 'udp.checksum.status'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const rows = out.split('\n').filter((l) => l.length > 0).map((l) => l.split('\t'));
      assert.is(rows.length, 4, 'inner, outer out of A; outer, inner into B');
      if (over === 6) assert.equal(rows[1], ['', '2001:db8::11,fd00:10:244:1::5', '128', '1']);
      else assert.equal(rows[1], ['192.0.2.11', 'fd00:10:244:1::5', '128', '1']);
      assert.equal(rows[0], ['', 'fd00:10:244:1::5', '128', '']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('dropped IPv6 packets: the journey names the drop and the ICMPv6 error sent back', async () => {
  const { a } = dualPair(4);
  a.engine.start();
  const journeys = trace(a);
  a.tun.inject(echoRequest6(ip6('fd00:10:244:1::5'), ip6('fd00:10:244:99::7')));
  a.tun.inject(echoRequest6(ip6('fd00:10:244:1::5'), ip6('fd00:10:244:2::7'), 1500));
  await settle();
  assert.is(journeys.length, 2);
  assert.equal(journeys[0].drop, { stage: 'route6', reason: 'no-match' });
  assert.is(journeys[0].icmpSent, 'no-route');
  assert.match(formatJourney(journeys[0]), 'DROPPED  route6/no-match; ICMPv6 no-route sent back into the TUN');
  assert.equal(journeys[1].drop, { stage: 'mtu', reason: 'too-big' });
  assert.is(journeys[1].icmpSent, 'packet-too-big');
});

test('filters: IPv6 addresses match IPv6 packets only, IPv4 addresses IPv4 packets only', () => {
  const v6 = echoRequest6(ip6('fd00:10:244:1::5'), ip6('fd00:10:244:2::7'));
  const v4 = echoRequest(ip('10.17.1.5'), ip('10.17.2.7'));
  assert.ok(filterMatches({ host6: ip6('fd00:10:244:2::7') }, v6, 0, v6.length));
  assert.not.ok(filterMatches({ host6: ip6('fd00:10:244:2::8') }, v6, 0, v6.length));
  assert.ok(filterMatches({ src6: ip6('fd00:10:244:1::5'), protocol: 58 }, v6, 0, v6.length));
  assert.not.ok(filterMatches({ protocol: 6 }, v6, 0, v6.length));
  assert.not.ok(filterMatches({ host: ip('10.17.2.7') }, v6, 0, v6.length));
  assert.not.ok(filterMatches({ host6: ip6('fd00:10:244:2::7') }, v4, 0, v4.length));
  assert.ok(filterMatches({}, v6, 0, v6.length));
});

test.run();
