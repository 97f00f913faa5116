// Child for test/net/v6-core.test.ts: inside a namespace, one dual-stack engine (issue 12) over a real TUN and a real
// UDP socket (IPv4 underlay), its tables programmed by hand for one peer, as lease sync would for a flannel-v6 node.
// Prints "ready" once serving; on SIGTERM prints its counters as one JSON line and exits. Without arguments: nothing.
import { execFileSync } from 'child_process';
import { BufferPool, HEADROOM } from '../../src/buf/pool';
import { createEncapsulation, type LocalVtep } from '../../src/dataplane/encap';
import { Engine, OFFLOAD_SLOT_BYTES } from '../../src/dataplane/engine';
import { Tun } from '../../src/io/tun';
import { UdpSocket } from '../../src/io/udp';
import { parseCidr, parseIPv4, parseMac } from '../../src/wire/address';
import { parseCidr6, parseIPv6 } from '../../src/wire/address6';

export interface V6ChildConfig {
  tun: string;
  tunMtu: number;
  overlayMtu: number;
  underlay: string;
  port: number;
  subnet: string;
  subnet6: string;
  vtepMac: string;
  vtepMac6: string;
  network6: string;
  peer: { underlay: string; subnet6: string; vtepMac6: string };
  /** Open the TUN with IFF_VNET_HDR offloads (TSO super-packets in, coalesced writes out). */
  offload?: boolean;
}

function main(config: V6ChildConfig): void {
  const subnet6 = parseCidr6(config.subnet6);
  const subnet = parseCidr(config.subnet);
  const offload = config.offload === true;
  const tun = Tun.open({ name: config.tun, mtu: config.tunMtu, address: subnet.address, prefixLength: 32, offload });
  execFileSync('ip', ['-6', 'addr', 'add', `${config.subnet6.split('/')[0]}/128`, 'dev', tun.name, 'nodad']);
  execFileSync('ip', ['-6', 'route', 'add', config.network6, 'dev', tun.name]);
  const socket = UdpSocket.open({ address: parseIPv4(config.underlay), port: config.port });
  const local: LocalVtep = {
    vtepIp: subnet.address,
    subnet,
    vtepMac: parseMac(config.vtepMac),
    underlayIp: parseIPv4(config.underlay),
    vni: 1,
    port: config.port,
    subnet6,
    vtepMac6: parseMac(config.vtepMac6),
  };
  const engine = new Engine({
    tun, socket, encap: createEncapsulation('vxlan', local),
    pool: offload ? new BufferPool(256, Math.ceil((HEADROOM + OFFLOAD_SLOT_BYTES) / 64) * 64) : new BufferPool(512),
    local, overlayMtu: config.overlayMtu,
    network: parseCidr('10.17.0.0/16'), network6: parseCidr6(config.network6),
    onFatal: (error) => {
      process.stderr.write(`${error.message}\n`);
      process.exit(3);
    },
  });
  const peer6 = parseCidr6(config.peer.subnet6);
  const peerMac = parseMac(config.peer.vtepMac6);
  const t = engine.tables;
  t.neighbors6.set(peer6.address, peerMac);
  t.fdb.set(peerMac, parseIPv4(config.peer.underlay));
  t.routes6.set(peer6, { subnet: peer6, gateway: peer6.address, encap: 'vxlan' });
  t.addVtep6(parseIPv4(config.peer.underlay), peer6);
  engine.start();
  process.on('SIGTERM', () => {
    process.stdout.write(`${JSON.stringify(engine.counters.toJSON())}\n`);
    engine.stop();
    process.exit(0);
  });
  process.stdout.write('ready\n');
}

if (process.argv[2] !== undefined) main(JSON.parse(process.argv[2]) as V6ChildConfig);
