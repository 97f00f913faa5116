// Child process for test/net/speed-tun.test.ts: runs inside a throwaway network namespace (via `ip netns exec`) and
// prints one JSON line of facts. A real TUN with offload, UDP GSO writes (uso) and io_uring reads and writes.
import { execFileSync } from 'child_process';
import * as dgram from 'dgram';
import { PacketBatch } from '../../src/io/batch';
import { Tun } from '../../src/io/tun';
import type { TunIoMode } from '../../src/io/types';
import { parseIPv4 } from '../../src/wire/address';
import { emitIpv4, IPPROTO_UDP } from '../../src/wire/ipv4';
import { emitUdp } from '../../src/wire/udp';
import { VIRTIO_NET_HDR_LEN } from '../../src/wire/virtio-net';

const SLOT = 2048;
const HEADROOM = 64;

function rxPackets(name: string): number {
  return Number(execFileSync('cat', [`/sys/class/net/${name}/statistics/rx_packets`], { encoding: 'utf8' }).trim());
}

export interface SpeedTunFacts {
  io: TunIoMode;
  ioFallback?: string;
  uso: boolean;
  usoFallback?: string;
  /** 20 datagrams of one flow written into the TUN with writeCoalesced. */
  inbound: { accepted: number; rxDelta: number; received: number; intact: boolean };
  /** 100 datagrams sent through the TUN by a socket, read back with tun.read. */
  outbound: { read: number; inOrder: boolean; calls: number };
}

async function run(name: string, io: TunIoMode, uso: boolean): Promise<SpeedTunFacts> {
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
  const local = parseIPv4('10.79.0.1');
  const peer = parseIPv4('10.79.0.2');
  const tun = Tun.open({ name, mtu: 1500, address: local, prefixLength: 24, offload: true, io, uso });
  const listener = dgram.createSocket('udp4');
  const sender = dgram.createSocket('udp4');
  try {
    await new Promise<void>((resolve) => listener.bind(5001, '10.79.0.1', resolve));
    const received: Buffer[] = [];
    listener.on('message', (message) => received.push(message));

    // Inbound: one flow's datagrams, as the engine queues them after decapsulation.
    const batch = new PacketBatch(Buffer.alloc(64 * SLOT), 64);
    const sent: Buffer[] = [];
    for (let i = 0; i < 20; i++) {
      const at = batch.count * SLOT + HEADROOM;
      const payload = Buffer.alloc(i === 19 ? 333 : 1200, i + 1);
      payload.writeUInt16BE(i, 0);
      sent.push(payload);
      payload.copy(batch.slab, at + 28);
      emitIpv4({ source: peer, destination: local, protocol: IPPROTO_UDP, payloadLength: 8 + payload.length, ttl: 64 }, batch.slab, at);
      emitUdp({ srcPort: 40000, dstPort: 5001, payloadLength: payload.length, source: peer, destination: local }, batch.slab, at + 20);
      batch.push(at, 28 + payload.length);
    }
    const before = rxPackets(name);
    const accepted = tun.writeCoalesced(batch);
    const rxDelta = rxPackets(name) - before;
    for (let wait = 0; wait < 100 && received.length < 20; wait++) await new Promise((r) => setTimeout(r, 20));
    const intact = received.length === 20 && received.every((m, i) => m.equals(sent[i]));

    // Outbound: datagrams routed into the TUN, read back in batches.
    for (let i = 0; i < 100; i++) {
      const payload = Buffer.alloc(64);
      payload.writeUInt32BE(i, 0);
      await new Promise<void>((resolve, reject) => sender.send(payload, 9, '10.79.0.2', (e) => (e ? reject(e) : resolve())));
    }
    const order: number[] = [];
    let calls = 0;
    for (; calls < 50 && order.length < 100; calls++) {
      const reads = new PacketBatch(Buffer.alloc(64 * SLOT), 64);
      for (let i = 0; i < 64; i++) reads.push(i * SLOT + HEADROOM, SLOT - HEADROOM);
      const n = tun.read(reads);
      for (let i = 0; i < n; i++) {
        const ip = reads.offsets[i] + VIRTIO_NET_HDR_LEN;
        if (reads.slab[ip + 9] !== IPPROTO_UDP || reads.slab.readUInt16BE(ip + 22) !== 9) continue; // not ours (IGMP...)
        order.push(reads.slab.readUInt32BE(ip + 28));
      }
      if (n === 0) await new Promise((r) => setTimeout(r, 10));
    }
    const inOrder = order.length === 100 && order.every((v, i) => v === i);
    return {
      io: tun.io, ioFallback: tun.ioFallback, uso: tun.uso, usoFallback: tun.usoFallback,
      inbound: { accepted, rxDelta, received: received.length, intact },
      outbound: { read: order.length, inOrder, calls },
    };
  } finally {
    listener.close();
    sender.close();
    tun.close();
  }
}

async function main(): Promise<void> {
  const [name, io, uso] = process.argv.slice(2);
  const facts = await run(name, io as TunIoMode, uso === 'on');
  process.stdout.write(`${JSON.stringify(facts)}\n`);
  process.exit(0);
}

if (require.main === module) {
  main().catch((error) => {
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  });
}
