// An IPv6-only node's engine (issue 12, "EnableIPv4": false) as the agent builds it: own subnet 0.0.0.0/0 (flannel's
// empty IPv4 part), the IPv4 socket slot held by the NoIpv4Underlay stand-in, every peer reached over socket6. IPv6
// crosses; IPv4 from the TUN or inside a VXLAN frame never gets anywhere, and each refusal is counted, never thrown.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BufferPool } from '../../src/buf/pool';
import { NO_IPV4_SUBNET } from '../../src/control/lease';
import { createEncapsulation, type LocalVtep } from '../../src/dataplane/encap';
import { Engine } from '../../src/dataplane/engine';
import { FakeTun } from '../../src/io/fake';
import { NoIpv4Underlay } from '../../src/io/no-underlay4';
import { PacketBatch } from '../../src/io/batch';
import { parseMac } from '../../src/wire/address';
import { type Cidr6, type IPv6, parseCidr6, parseIPv6 } from '../../src/wire/address6';
import { PORT, VNI, vxlanFrame } from '../support/fake-nodes';
import { FakeNetwork6, type FakeSocket6 } from '../support/fake-network6';
import { NETWORK6, echoRequest6 } from '../support/fake-nodes6';
import { echoRequest, ip } from '../support/packets';

interface V6OnlyNode { subnet6: Cidr6; underlayIp6: IPv6; mac6: number; tun: FakeTun; socket6: FakeSocket6; engine: Engine }

function makeNode(net6: FakeNetwork6, index: number): V6OnlyNode {
  const subnet6 = parseCidr6(`fd00:10:244:${index}::/64`);
  const underlayIp6 = parseIPv6(`2001:db8::${10 + index}`);
  const mac6 = parseMac(`02:00:00:00:06:0${index}`);
  const tun = new FakeTun(`vxtun${index}`, 1450, false);
  const socket6 = net6.udp6(underlayIp6, PORT);
  const local: LocalVtep = {
    vtepIp: 0, subnet: NO_IPV4_SUBNET, vtepMac: parseMac(`02:00:00:00:00:0${index}`), underlayIp: 0, vni: VNI, port: PORT,
    subnet6, vtepMac6: mac6, underlayIp6,
  };
  const engine = new Engine({
    tun, socket: new NoIpv4Underlay(), socket6, encap: createEncapsulation('vxlan', local), pool: new BufferPool(256, 2048), local,
    overlayMtu: 1450, network: NO_IPV4_SUBNET, network6: NETWORK6,
  });
  return { subnet6, underlayIp6, mac6, tun, socket6, engine };
}

function pair(): { net6: FakeNetwork6; a: V6OnlyNode; b: V6OnlyNode } {
  const net6 = new FakeNetwork6();
  const a = makeNode(net6, 1);
  const b = makeNode(net6, 2);
  for (const [x, y] of [[a, b], [b, a]] as const) {
    const t = x.engine.tables;
    t.neighbors6.set(y.subnet6.address, y.mac6);
    t.fdb6.set(y.mac6, y.underlayIp6);
    t.routes6.set(y.subnet6, { subnet: y.subnet6, gateway: y.subnet6.address, encap: 'vxlan' });
    t.addVtep6(y.underlayIp6, y.subnet6);
  }
  a.engine.start();
  b.engine.start();
  return { net6, a, b };
}

async function settle(): Promise<void> {
  for (let turn = 0; turn < 200; turn++) await new Promise((resolve) => setImmediate(resolve));
}

const E = suite('engine: IPv6-only node');

E('IPv6 crosses both ways over the IPv6 underlay with no IPv4 socket; nothing is dropped', async () => {
  const { net6, a, b } = pair();
  const ping = echoRequest6(parseIPv6('fd00:10:244:1::5'), parseIPv6('fd00:10:244:2::7'));
  const pong = echoRequest6(parseIPv6('fd00:10:244:2::7'), parseIPv6('fd00:10:244:1::5'), 100);
  a.tun.inject(ping);
  b.tun.inject(pong);
  await settle();
  assert.equal(b.tun.written, [ping]);
  assert.equal(a.tun.written, [pong]);
  assert.is(net6.log.length, 2);
  assert.is(a.engine.counters.drops.total + b.engine.counters.drops.total, 0, JSON.stringify(a.engine.counters.drops.toJSON()));
});

E('an IPv4 packet from the TUN goes nowhere: dropped and counted, nothing on the wire', async () => {
  const { net6, a, b } = pair();
  a.tun.inject(echoRequest(ip('10.17.1.5'), ip('10.17.2.7')));
  await settle();
  assert.is(net6.log.length, 0);
  assert.equal(b.tun.written, []);
  assert.ok(a.engine.counters.drops.total >= 1, 'counted');
  assert.is(a.engine.counters.drops.get('route', 'no-match'), 1, 'no IPv4 route on an IPv6-only node');
});

E('an IPv4 packet inside VXLAN from a known IPv6 VTEP is refused, to either VTEP MAC, never written to the TUN', async () => {
  const { a, b } = pair();
  const inner = echoRequest(ip('10.17.2.7'), ip('10.17.1.5'));
  // To the IPv6 VTEP's MAC: not the MAC IPv4 is for. To the (unpublished) IPv4 VTEP MAC: the sender holds no IPv4
  // subnet and we hold none (admission.ts), so it is refused at the inner IPv4 checks.
  a.socket6.inject(vxlanFrame(inner, b.mac6, a.mac6), b.underlayIp6, PORT);
  a.socket6.inject(vxlanFrame(inner, b.mac6, parseMac('02:00:00:00:00:01')), b.underlayIp6, PORT);
  await settle();
  assert.equal(a.tun.written, []);
  const drops = a.engine.counters.drops.toJSON() as Record<string, number>;
  assert.is(drops['ethernet/not-our-mac'], 1, JSON.stringify(drops));
  assert.ok(Object.keys(drops).some((k) => k.startsWith('inner-ipv4/')), JSON.stringify(drops));
});

E('the IPv4 stand-in: never readable, takes nothing, tells ENETUNREACH once per refused send', () => {
  const s = new NoIpv4Underlay();
  let woke = false;
  s.watch(() => { woke = true; });
  const batch = new PacketBatch(Buffer.alloc(4096), 4);
  assert.is(s.recv(batch), 0);
  assert.is(s.takeSendError(), undefined);
  batch.push(0, 10, ip('192.0.2.1'), PORT);
  assert.is(s.send(batch), 0);
  assert.is(s.takeSendError(), 'ENETUNREACH');
  assert.is(s.takeSendError(), undefined);
  assert.not.ok(woke);
  s.close();
});

E.run();
