// Dual-stack engines over the fakes: node i owns 10.17.i.0/24 and fd00:10:244:i::/64, underlay 192.0.2.(10 + i) and
// (with an IPv6 underlay) 2001:db8::(10 + i), VTEP MACs 02:00:00:00:00:0i (IPv4) and 02:00:00:00:06:0i (IPv6).
// Programmed as flannel programs flannel-v6.<VNI>: route <subnet> via <subnet>::, neighbor, FDB.
import { BufferPool, HEADROOM } from '../../src/buf/pool';
import { createEncapsulation, type LocalVtep } from '../../src/dataplane/encap';
import { Engine, OFFLOAD_SLOT_BYTES } from '../../src/dataplane/engine';
import { FakeNetwork, type FakeSocket, FakeTun } from '../../src/io/fake';
import { type Cidr, type IPv4, type Mac, parseCidr, parseMac } from '../../src/wire/address';
import { type Cidr6, type IPv6, parseCidr6, parseIPv6 } from '../../src/wire/address6';
import { ICMPV6_ECHO_REQUEST, emitIcmpv6 } from '../../src/wire/icmpv6';
import { IPPROTO_ICMPV6, IPPROTO_UDP6, IPV6_HEADER_LEN, emitIpv6 } from '../../src/wire/ipv6';
import { NETWORK, PORT, VNI } from './fake-nodes';
import { FakeNetwork6, type FakeSocket6 } from './fake-network6';
import { ip } from './packets';

export const NETWORK6 = parseCidr6('fd00:10:244::/56');
export const ip6 = parseIPv6;

export interface DualNode {
  index: number;
  subnet: Cidr;
  subnet6: Cidr6;
  underlayIp: IPv4;
  underlayIp6: IPv6;
  mac: Mac;
  mac6: Mac;
  local: LocalVtep;
  tun: FakeTun;
  socket: FakeSocket;
  socket6: FakeSocket6 | undefined;
  pool: BufferPool;
  engine: Engine;
}

export interface DualNodeOptions {
  /** Give the node an IPv6 underlay socket. */
  underlay6?: boolean;
  /** Leave out the IPv6 lease (an IPv4-only node). */
  noSubnet6?: boolean;
  gro?: boolean;
  offload?: boolean;
  /** The IPv4 underlay socket offers UDP GSO (FakeSocket.enableGso) before the engine is made. */
  gso?: boolean;
  overlayMtu?: number;
  batchSize?: number;
  poolSize?: number;
}

export function makeDualNode(net: FakeNetwork, net6: FakeNetwork6, index: number, options: DualNodeOptions = {}): DualNode {
  const subnet = parseCidr(`10.17.${index}.0/24`);
  const subnet6 = parseCidr6(`fd00:10:244:${index}::/64`);
  const underlayIp = ip(`192.0.2.${10 + index}`);
  const underlayIp6 = parseIPv6(`2001:db8::${10 + index}`);
  const mac = parseMac(`02:00:00:00:00:0${index}`);
  const mac6 = parseMac(`02:00:00:00:06:0${index}`);
  const tun = new FakeTun(`vxtun${index}`, 1450, options.offload === true);
  const socket = net.udp(underlayIp, PORT);
  socket.gro = options.gro === true;
  if (options.gso === true) socket.enableGso();
  const socket6 = options.underlay6 === true ? net6.udp6(underlayIp6, PORT) : undefined;
  if (socket6 !== undefined) socket6.gro = options.gro === true;
  const big = options.gro === true || options.offload === true;
  const slotSize = big ? Math.ceil((HEADROOM + OFFLOAD_SLOT_BYTES) / 64) * 64 : 2048;
  const pool = new BufferPool(options.poolSize ?? (big ? 160 : 256), slotSize);
  const local: LocalVtep = {
    vtepIp: subnet.address,
    subnet,
    vtepMac: mac,
    underlayIp,
    vni: VNI,
    port: PORT,
    ...(options.noSubnet6 ? {} : { subnet6, vtepMac6: mac6 }),
    ...(socket6 ? { underlayIp6 } : {}),
  };
  const engine = new Engine({
    tun, socket, socket6, encap: createEncapsulation('vxlan', local), pool, local, overlayMtu: options.overlayMtu ?? 1450,
    network: NETWORK, network6: NETWORK6, batchSize: options.batchSize,
  });
  return { index, subnet, subnet6, underlayIp, underlayIp6, mac, mac6, local, tun, socket, socket6, pool, engine };
}

/** Programs `from` for `to`'s IPv6 subnet as flannel does for flannel-v6: over `to`'s IPv6 underlay, or its IPv4 one. */
export function learnPeer6(from: DualNode, to: DualNode, over: 4 | 6): void {
  const t = from.engine.tables;
  t.neighbors6.set(to.subnet6.address, to.mac6);
  if (over === 6) t.fdb6.set(to.mac6, to.underlayIp6);
  else t.fdb.set(to.mac6, to.underlayIp);
  t.routes6.set(to.subnet6, { subnet: to.subnet6, gateway: to.subnet6.address, encap: 'vxlan' });
  t.addVtep6(over === 6 ? to.underlayIp6 : to.underlayIp, to.subnet6);
}

/** Two dual-stack nodes that know each other for IPv6 (and IPv4, over the IPv4 underlay). */
export function dualPair(over: 4 | 6, options: DualNodeOptions = {}): { net: FakeNetwork; net6: FakeNetwork6; a: DualNode; b: DualNode } {
  const net = new FakeNetwork();
  const net6 = new FakeNetwork6();
  const a = makeDualNode(net, net6, 1, { underlay6: over === 6, ...options });
  const b = makeDualNode(net, net6, 2, { underlay6: over === 6, ...options });
  for (const [x, y] of [[a, b], [b, a]]) {
    learnPeer6(x, y, over);
    x.engine.tables.neighbors.set(y.subnet.address, y.mac);
    x.engine.tables.fdb.set(y.mac, y.underlayIp);
    x.engine.tables.routes.set(y.subnet, { subnet: y.subnet, gateway: y.subnet.address, encap: 'vxlan' });
    x.engine.tables.addVtep(y.underlayIp, y.subnet);
  }
  return { net, net6, a, b };
}

/** An ICMPv6 echo request with `dataLength` bytes of pattern and a valid checksum. */
export function echoRequest6(source: IPv6, destination: IPv6, dataLength = 56, hopLimit = 64): Buffer {
  const packet = Buffer.alloc(IPV6_HEADER_LEN + 8 + dataLength);
  for (let i = 0; i < dataLength; i++) packet[IPV6_HEADER_LEN + 8 + i] = i & 0xff;
  emitIpv6({ source, destination, nextHeader: IPPROTO_ICMPV6, payloadLength: 8 + dataLength, hopLimit }, packet, 0);
  emitIcmpv6({ type: ICMPV6_ECHO_REQUEST, code: 0, identifier: 0x1234, sequence: 1, payloadLength: dataLength }, packet, 0, IPV6_HEADER_LEN);
  return packet;
}

/** A UDP-over-IPv6 packet (checksum left 0: the engine does not look at it). */
export function udp6Packet(source: IPv6, destination: IPv6, srcPort: number, dstPort: number, dataLength = 32): Buffer {
  const packet = Buffer.alloc(IPV6_HEADER_LEN + 8 + dataLength);
  emitIpv6({ source, destination, nextHeader: IPPROTO_UDP6, payloadLength: 8 + dataLength, hopLimit: 64 }, packet, 0);
  packet.writeUInt16BE(srcPort, 40);
  packet.writeUInt16BE(dstPort, 42);
  packet.writeUInt16BE(8 + dataLength, 44);
  return packet;
}
