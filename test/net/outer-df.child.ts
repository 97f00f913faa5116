// Child process for test/net/outer-df.test.ts, run inside a lab namespace (its own loopback, nobody else's packets):
// sends through real UDP and raw sockets with each DF setting and reports the DF bit of the IPv4 headers a raw
// socket sees on loopback, as one JSON line. Loading it without arguments does nothing.
import { PacketBatch } from '../../src/io/batch';
import { RawSocket } from '../../src/io/raw';
import { UdpSocket } from '../../src/io/udp';
import { parseIPv4 } from '../../src/wire/address';

export interface DfFacts {
  /** IP_MTU_DISCOVER after open: no option, dontFragment false, true; then after setDontFragment(true) / (false). */
  udpModes: number[];
  rawModes: number[];
  /** DF bits (1/0) of what left: [single datagram, GSO datagram] per setting, UDP; one packet per setting, raw. */
  udpUnset: number[];
  udpSet: number[];
  rawUnset: number[];
  rawSet: number[];
}

const LOOPBACK = parseIPv4('127.0.0.1');
const PROTOCOL = 253; // RFC 3692 experimentation
const SLOT = 4096;

function batchOf(capacity: number): PacketBatch {
  const batch = new PacketBatch(Buffer.alloc(capacity * SLOT), capacity);
  return batch;
}

/** Reads what the sniffer holds; returns the DF bits of IPv4 packets matching `match`. */
function sniff(sniffer: RawSocket, match: (packet: Buffer) => boolean): number[] {
  const batch = batchOf(16);
  const bits: number[] = [];
  for (;;) {
    for (let i = 0; i < batch.capacity; i++) {
      batch.offsets[i] = i * SLOT;
      batch.lengths[i] = SLOT;
    }
    batch.count = batch.capacity;
    const n = sniffer.recv(batch);
    if (n === 0) return bits;
    for (let i = 0; i < n; i++) {
      const packet = batch.slab.subarray(batch.offsets[i], batch.offsets[i] + batch.lengths[i]);
      if (match(packet)) bits.push((packet[6] & 0x40) !== 0 ? 1 : 0);
    }
  }
}

function settle(): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
}

function main(): void {
  const modes = (open: (df?: boolean) => UdpSocket | RawSocket) => {
    const out: number[] = [];
    for (const df of [undefined, false, true]) {
      const socket = open(df);
      out.push(socket.mtuDiscoverMode);
      socket.close();
    }
    const socket = open();
    socket.setDontFragment(true);
    out.push(socket.mtuDiscoverMode);
    socket.setDontFragment(false);
    out.push(socket.mtuDiscoverMode);
    socket.close();
    return out;
  };
  const udpModes = modes((dontFragment) => UdpSocket.open({ address: LOOPBACK, port: 0, dontFragment }));
  const rawModes = modes((dontFragment) => RawSocket.open({ protocol: PROTOCOL, address: LOOPBACK, dontFragment }));

  const receiver = UdpSocket.open({ address: LOOPBACK, port: 0 });
  const sender = UdpSocket.open({ address: LOOPBACK, port: 0 });
  const udpSniffer = RawSocket.open({ protocol: 17, address: LOOPBACK });
  const toReceiver = (packet: Buffer) => packet.readUInt16BE((packet[0] & 0x0f) * 4 + 2) === receiver.port;
  const udpRun = (df: boolean): number[] => {
    sender.setDontFragment(df);
    const batch = batchOf(1);
    batch.push(0, 100, LOOPBACK, receiver.port);
    sender.send(batch);
    sender.sendGso(batch.slab, 0, 300, 100, LOOPBACK, receiver.port);
    settle();
    return sniff(udpSniffer, toReceiver);
  };
  const udpUnset = udpRun(false);
  const udpSet = udpRun(true);

  const rawSender = RawSocket.open({ protocol: PROTOCOL, address: LOOPBACK });
  const rawSniffer = RawSocket.open({ protocol: PROTOCOL, address: LOOPBACK });
  const rawRun = (df: boolean): number[] => {
    rawSender.setDontFragment(df);
    const batch = batchOf(1);
    batch.push(0, 200, LOOPBACK);
    rawSender.send(batch);
    settle();
    // The sender sees its own packet too (both are protocol-253 raw sockets on one host): keep the sniffer's view.
    return sniff(rawSniffer, () => true);
  };
  const rawUnset = rawRun(false);
  const rawSet = rawRun(true);
  const facts: DfFacts = { udpModes, rawModes, udpUnset, udpSet, rawUnset, rawSet };
  process.stdout.write(`${JSON.stringify(facts)}\n`);
}

if (require.main === module) main();
