// Engines over the in-memory fakes (src/io/fake.ts) for the data plane's unit, fault and fuzz tests: node i owns
// 10.17.i.0/24 at underlay 192.0.2.(10 + i), MAC 02:00:00:00:00:0i.
import { BufferPool, HEADROOM } from '../../src/buf/pool';
import { createEncapsulation, type LocalVtep } from '../../src/dataplane/encap';
import { Engine, OFFLOAD_SLOT_BYTES } from '../../src/dataplane/engine';
import type { DataPlaneLog } from '../../src/dataplane/log';
import type { EncapName } from '../../src/dataplane/tables';
import { FakeNetwork, type FakeSocket, FakeTun } from '../../src/io/fake';
import type { TunIoMode } from '../../src/io/types';
import { type Cidr, type IPv4, type Mac, parseCidr, parseMac } from '../../src/wire/address';
import { ip } from './packets';

export const NETWORK = parseCidr('10.17.0.0/16');
export const PORT = 4789;
export const VNI = 1;

export interface FakeNode {
  subnet: Cidr;
  underlayIp: IPv4;
  mac: Mac;
  local: LocalVtep;
  tun: FakeTun;
  socket: FakeSocket;
  pool: BufferPool;
  engine: Engine;
}

export interface FakeNodeOptions {
  poolSize?: number;
  /** Bytes per pool slot (default 2048; 64 KB slots when gro or offload). */
  slotSize?: number;
  gro?: boolean;
  offload?: boolean;
  batchSize?: number;
  /** The socket offers UDP GSO (FakeSocket.enableGso) before the engine is made (it decides once). */
  gso?: boolean;
  /** Engine option: super-packets go whole to raw sockets' sendSegments (default true). */
  nativeSegments?: boolean;
  /** The fake TUN's read order: `uring` hands slots back permuted, as native/uring.cc may. */
  tunIo?: TunIoMode;
  log?: DataPlaneLog;
  onFatal?: (error: Error) => void;
}

export function makeFakeNode(network: FakeNetwork, encap: EncapName, index: number, options: FakeNodeOptions = {}): FakeNode {
  const subnet = parseCidr(`10.17.${index}.0/24`);
  const underlayIp = ip(`192.0.2.${10 + index}`);
  const mac = parseMac(`02:00:00:00:00:0${index}`);
  const tun = new FakeTun(`vxtun${index}`, 1450, options.offload === true, options.tunIo);
  const socket = encap === 'vxlan' ? network.udp(underlayIp, PORT) : network.raw(underlayIp);
  socket.gro = options.gro === true;
  if (options.gso === true) socket.enableGso();
  const big = options.gro === true || options.offload === true;
  const slotSize = options.slotSize ?? (big ? Math.ceil((HEADROOM + OFFLOAD_SLOT_BYTES) / 64) * 64 : 2048);
  const pool = new BufferPool(options.poolSize ?? (big ? 160 : 256), slotSize);
  const local: LocalVtep = { vtepIp: subnet.address, subnet, vtepMac: mac, underlayIp, vni: VNI, port: PORT };
  const engine = new Engine({
    tun, socket, encap: createEncapsulation(encap, local), pool, local, overlayMtu: 1450, network: NETWORK,
    batchSize: options.batchSize, log: options.log, onFatal: options.onFatal, nativeSegments: options.nativeSegments,
  });
  return { subnet, underlayIp, mac, local, tun, socket, pool, engine };
}

/** Programs `from`'s tables for `to`, as lease sync would. */
export function learnPeer(from: FakeNode, to: FakeNode, encap: EncapName): void {
  const t = from.engine.tables;
  if (encap === 'vxlan') {
    t.neighbors.set(to.subnet.address, to.mac);
    t.fdb.set(to.mac, to.underlayIp);
    t.routes.set(to.subnet, { subnet: to.subnet, gateway: to.subnet.address, encap });
  } else {
    t.routes.set(to.subnet, { subnet: to.subnet, gateway: to.underlayIp, encap });
  }
  t.addVtep(to.underlayIp, to.subnet);
}

export function fakePair(encap: EncapName, options: FakeNodeOptions = {}): { net: FakeNetwork; a: FakeNode; b: FakeNode } {
  const net = new FakeNetwork();
  const a = makeFakeNode(net, encap, 1, options);
  const b = makeFakeNode(net, encap, 2, options);
  learnPeer(a, b, encap);
  learnPeer(b, a, encap);
  return { net, a, b };
}

/** A logger that keeps what it was told. */
export function recordingLog(): DataPlaneLog & { lines: { level: string; msg: string; fields?: Record<string, unknown> }[] } {
  const lines: { level: string; msg: string; fields?: Record<string, unknown> }[] = [];
  return {
    lines,
    info: (msg, fields) => lines.push({ level: 'info', msg, fields }),
    warn: (msg, fields) => lines.push({ level: 'warn', msg, fields }),
    error: (msg, fields) => lines.push({ level: 'error', msg, fields }),
  };
}

/** A VXLAN frame (VXLAN header + inner Ethernet) around `inner`, as a peer's agent sends it. */
export function vxlanFrame(inner: Buffer, srcMac: Mac, dstMac: Mac, vni = VNI, etherType = 0x0800): Buffer {
  const f = Buffer.alloc(8 + 14 + inner.length);
  f[0] = 0x08;
  f.writeUIntBE(vni, 4, 3);
  f.writeUIntBE(dstMac, 8, 6);
  f.writeUIntBE(srcMac, 14, 6);
  f.writeUInt16BE(etherType, 20);
  inner.copy(f, 22);
  return f;
}
