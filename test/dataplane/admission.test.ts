// Nothing gets in: decapsulated packets reach the TUN only from a leased sender, with an inner source in that
// sender's lease and an inner destination in ours; our own VTEP MAC coming back is a loop.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { LeaseSync } from '../../src/control/lease-sync';
import { nullLogger } from '../../src/control/log';
import { InnerAdmission } from '../../src/dataplane/admission';
import { ForwardingTables } from '../../src/dataplane/tables';
import { VtepRegistry } from '../../src/dataplane/vtep-registry';
import type { EncapName } from '../../src/dataplane/tables';
import { parseCidr, parseMac } from '../../src/wire/address';
import { emitIpipOuter } from '../../src/wire/ipip';
import { echoRequest, ip } from '../support/packets';
import { type FakeNode, fakePair, vxlanFrame } from '../support/fake-nodes';

const Admission = suite('decap admission');

/** What `from` (underlay address) would put on the wire to b for this inner packet. */
function datagram(encap: EncapName, inner: Buffer, from: number, to: FakeNode, srcMac: number): Buffer {
  if (encap === 'vxlan') return vxlanFrame(inner, srcMac, to.mac);
  const outer = Buffer.alloc(20 + inner.length);
  inner.copy(outer, 20);
  emitIpipOuter({ source: from, destination: to.underlayIp }, outer, 0);
  return outer;
}

Admission('registry: an underlay address holds the subnets of its leases; removing one keeps the others', () => {
  const r = new VtepRegistry();
  const node = ip('192.0.2.12');
  r.add(node, parseCidr('10.17.2.0/24'));
  r.add(node, parseCidr('10.17.9.0/24'));
  assert.ok(r.get(node)!.holds(ip('10.17.2.0')), 'its VTEP address');
  assert.ok(r.get(node)!.holds(ip('10.17.9.200')));
  assert.not.ok(r.get(node)!.holds(ip('10.17.3.1')));
  r.remove(node, parseCidr('10.17.9.0/24'));
  assert.not.ok(r.get(node)!.holds(ip('10.17.9.200')));
  assert.equal(r.get(node)!.subnets, [parseCidr('10.17.2.0/24')]);
  r.remove(node, parseCidr('10.17.2.0/24'));
  assert.is(r.get(node), undefined, 'gone with its last lease');
  assert.is(r.get(ip('192.0.2.99')), undefined);
});

Admission('lease sync registers each lease subnet under its PublicIP; a node moving to another address moves its subnet', () => {
  const target = { tables: new ForwardingTables() };
  const sync = new LeaseSync(target, parseCidr('10.17.1.0/24'), 'ipip', nullLogger);
  const lease = (subnet: string, publicIp: string) => ({ subnet: parseCidr(subnet), attrs: { publicIp: ip(publicIp), backendType: 'ipip', backendData: { vni: 1, vtepMac: parseMac('02:00:00:00:00:09') } } });
  sync.applySnapshot([lease('10.17.2.0/24', '192.0.2.12'), lease('10.17.3.0/24', '192.0.2.12')]);
  const t = target.tables;
  assert.ok(t.vtepOf(ip('192.0.2.12'))!.holds(ip('10.17.2.4')));
  assert.ok(t.vtepOf(ip('192.0.2.12'))!.holds(ip('10.17.3.4')));
  sync.applyEvents([{ type: 'added', lease: lease('10.17.3.0/24', '192.0.2.13') }]);
  assert.not.ok(t.vtepOf(ip('192.0.2.12'))!.holds(ip('10.17.3.4')), 'the old address no longer speaks for the moved subnet');
  assert.ok(t.vtepOf(ip('192.0.2.13'))!.holds(ip('10.17.3.4')));
  sync.applyEvents([{ type: 'removed', lease: lease('10.17.2.0/24', '192.0.2.12') }]);
  assert.is(t.vtepOf(ip('192.0.2.12')), undefined);
});

Admission('inner checks: source in the sender lease, destination in ours (VTEP addresses included)', () => {
  const r = new VtepRegistry();
  r.add(ip('192.0.2.11'), parseCidr('10.17.1.0/24'));
  const sender = r.get(ip('192.0.2.11'))!;
  const admission = new InnerAdmission(parseCidr('10.17.2.0/24'));
  const check = (src: string, dst: string) => admission.check(echoRequest(ip(src), ip(dst)), 0, sender);
  assert.is(check('10.17.1.0', '10.17.2.0'), undefined);
  assert.is(check('10.17.1.77', '10.17.2.255'), undefined);
  assert.is(check('10.17.3.1', '10.17.2.5'), 'spoofed-source');
  assert.is(check('192.168.1.1', '10.17.2.5'), 'spoofed-source');
  assert.is(check('10.17.1.5', '10.17.3.5'), 'not-for-us');
  assert.is(check('10.17.1.5', '192.168.0.1'), 'not-for-us');
  assert.is(check('10.17.1.5', '255.255.255.255'), 'not-for-us');
});

Admission('an IPv6-only node (own subnet 0.0.0.0/0, flannel\'s empty IPv4 part) admits no inner IPv4 packet, even from a sender holding it', () => {
  const r = new VtepRegistry();
  const peer = ip('192.0.2.12');
  r.add(peer, parseCidr('10.17.1.0/24'));
  const admission = new InnerAdmission(parseCidr('0.0.0.0/0'));
  assert.is(admission.check(echoRequest(ip('10.17.1.5'), ip('10.17.2.5')), 0, r.get(peer)!), 'not-for-us');
  assert.is(admission.check(echoRequest(ip('10.17.1.5'), ip('0.0.0.0')), 0, r.get(peer)!), 'not-for-us');
});

for (const encap of ['vxlan', 'ipip'] as const) {
  Admission(`${encap}: strangers, forged inner sources and foreign destinations never reach the TUN, each counted by reason`, () => {
    const { a, b } = fakePair(encap);
    const stranger = ip('198.51.100.66');
    const send = (src: string, dst: string, from = a.underlayIp): void => {
      b.socket.inject(datagram(encap, echoRequest(ip(src), ip(dst)), from, b, a.mac), from, 40000);
    };
    send('10.17.1.5', '10.17.2.5', stranger); // a stranger, even with plausible inner addresses
    send('10.17.9.9', '10.17.7.7', stranger); // a stranger forging everything counts as a stranger
    send('10.17.3.5', '10.17.2.5'); // a leased peer forging another node's pod
    send('10.17.2.9', '10.17.2.5'); // ... or one of ours
    send('10.17.1.5', '10.17.3.5'); // a leased peer using us as a router
    send('10.17.1.5', '192.168.0.1'); // ... into the host's other networks
    send('10.17.1.5', '10.17.2.5'); // the one good packet
    send('10.17.1.0', '10.17.2.0'); // VTEP to VTEP, fine too
    b.engine.pumpInbound();
    const drops = b.engine.counters.drops;
    assert.is(drops.get('underlay', 'unknown-vtep'), 2);
    assert.is(drops.get('inner-ipv4', 'spoofed-source'), 2);
    assert.is(drops.get('inner-ipv4', 'not-for-us'), 2);
    assert.is(drops.total, 6);
    assert.is(b.tun.written.length, 2);
    assert.is(b.pool.inUse, 0);
  });

  Admission(`${encap}: a lease removed, its address is a stranger again`, () => {
    const { a, b } = fakePair(encap);
    b.engine.tables.removeVtep(a.underlayIp, a.subnet);
    b.socket.inject(datagram(encap, echoRequest(ip('10.17.1.5'), ip('10.17.2.5')), a.underlayIp, b, a.mac), a.underlayIp, 40000);
    b.engine.pumpInbound();
    assert.is(b.engine.counters.drops.get('underlay', 'unknown-vtep'), 1);
    assert.is(b.tun.written.length, 0);
  });
}

Admission('vxlan: a frame whose inner source MAC is our own VTEP MAC is a loop (ethernet/loop)', () => {
  const { a, b } = fakePair('vxlan');
  b.socket.inject(vxlanFrame(echoRequest(ip('10.17.1.5'), ip('10.17.2.5')), b.mac, b.mac), a.underlayIp, 40000);
  b.engine.pumpInbound();
  assert.is(b.engine.counters.drops.get('ethernet', 'loop'), 1);
  assert.is(b.tun.written.length, 0);
});

Admission('vxlan: reserved bits set (flags byte but the I bit, bytes 1-3 and 7) are ignored, as RFC 7348 says', () => {
  const { a, b } = fakePair('vxlan');
  const inner = echoRequest(ip('10.17.1.5'), ip('10.17.2.5'));
  const frame = vxlanFrame(inner, a.mac, b.mac);
  frame[0] = 0xff;
  frame.fill(0xff, 1, 4);
  frame[7] = 0xff;
  b.socket.inject(frame, a.underlayIp, 40000);
  b.engine.pumpInbound();
  assert.equal(b.tun.written, [inner]);
});

Admission.run();
