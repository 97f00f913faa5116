// Scenarios for speed-ipip.test.ts, each run by `ip netns exec` inside a namespace the test made:
//   segments   RawSocket.sendSegments (native cut + checksum + one sendmmsg) over lo, checked segment by segment at a
//              second raw socket: lengths, IDs, seq, flags, both checksums, and the payloads rebuilding the original
//   tcp-sink   ADDRESS PORT: accepts one TCP connection, prints {bytes, sha256} of what arrived
//   tcp-source ADDRESS PORT BYTES: connects, sends BYTES of a fixed pseudo-random stream, prints {bytes, sha256}
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { createServer, connect } from 'node:net';
import { PacketBatch } from '../../src/io/batch';
import { RawSocket, SEGMENTS_MAX } from '../../src/io/raw';
import { parseIPv4 } from '../../src/wire/address';
import { checkSegments, superPacket } from '../support/segments';

export interface SegmentCase {
  payload: number;
  mss: number;
  /** What sendSegments returned. */
  sent: number;
  expected: number;
  received: number;
  /** Empty when every segment was right; else what was wrong first. */
  problems: string[];
  payloadMatches: boolean;
}

export interface SegmentFacts {
  cases: SegmentCase[];
  /** sendSegments on a UDP packet (not TCP): -1, nothing sent. */
  notTcp: number;
}

export interface StreamFacts {
  bytes: number;
  sha256: string;
}

function segmentsScenario(): void {
  const ip = (...args: string[]): void => void execFileSync('ip', args);
  ip('link', 'set', 'lo', 'up');
  ip('addr', 'add', '10.99.1.1/32', 'dev', 'lo');
  ip('addr', 'add', '10.99.1.2/32', 'dev', 'lo');
  const a = parseIPv4('10.99.1.1');
  const b = parseIPv4('10.99.1.2');
  const sender = RawSocket.open({ protocol: 4, address: a });
  const receiver = RawSocket.open({ protocol: 4, address: b });
  // 64000 and an odd 60001 (odd last chunk: the checksum's padded tail), a full 64 KB at MSS 536 (123 segments),
  // one segment that is exactly the MSS, and a bare ACK-like packet without payload.
  const shapes = [
    { payload: 64000, mss: 1440 },
    { payload: 60001, mss: 1448 },
    { payload: 65495, mss: 536 },
    { payload: 1440, mss: 1440 },
    { payload: 0, mss: 1440 },
  ];
  const lengths = new Uint32Array(SEGMENTS_MAX);
  const rx = new PacketBatch(Buffer.alloc(64 * 2048), 64);
  const cases: SegmentCase[] = [];
  const deadline = Date.now() + 5000;
  for (const { payload, mss } of shapes) {
    const packet = superPacket(payload, parseIPv4('10.17.1.1'), parseIPv4('10.17.2.1'));
    const slab = Buffer.alloc(packet.length + 100);
    packet.copy(slab, 50);
    const sent = sender.sendSegments(slab, 50, packet.length, 40, mss, 20, b, lengths);
    const expected = payload === 0 ? 1 : Math.ceil(payload / mss);
    const received: Buffer[] = [];
    while (received.length < expected && Date.now() < deadline) {
      for (let i = 0; i < 64; i++) {
        rx.offsets[i] = i * 2048;
        rx.lengths[i] = 2048;
      }
      rx.count = 64;
      const n = receiver.recv(rx);
      for (let i = 0; i < n; i++) received.push(Buffer.from(rx.slab.subarray(rx.offsets[i], rx.offsets[i] + rx.lengths[i])));
    }
    cases.push({ payload, mss, sent, expected, received: received.length, ...checkSegments(received, packet, mss) });
  }
  const udp = superPacket(100, a, b);
  udp[9] = 17;
  const notTcp = sender.sendSegments(udp, 0, udp.length, 40, 1440, 20, b, lengths);
  sender.close();
  receiver.close();
  const facts: SegmentFacts = { cases, notTcp };
  console.log(JSON.stringify(facts));
}

/** A fixed stream: block i is sha256 of its index, repeated; the same on every run and every machine. */
function streamBlock(index: number): Buffer {
  const seed = createHash('sha256').update(String(index)).digest();
  return Buffer.concat(Array.from({ length: 2048 }, () => seed)); // 64 KB
}

function sinkScenario(address: string, port: number): void {
  const hash = createHash('sha256');
  let bytes = 0;
  const server = createServer((socket) => {
    socket.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    socket.on('end', () => {
      const facts: StreamFacts = { bytes, sha256: hash.digest('hex') };
      console.log(JSON.stringify(facts));
      server.close();
    });
  });
  server.listen(port, address, () => console.log('listening'));
}

function sourceScenario(address: string, port: number, total: number): void {
  const hash = createHash('sha256');
  const socket = connect(port, address);
  let sent = 0;
  let block = 0;
  const pump = (): void => {
    while (sent < total) {
      const data = streamBlock(block++).subarray(0, Math.min(65536, total - sent));
      hash.update(data);
      sent += data.length;
      if (!socket.write(data)) {
        socket.once('drain', pump);
        return;
      }
    }
    socket.end(() => {
      const facts: StreamFacts = { bytes: sent, sha256: hash.digest('hex') };
      console.log(JSON.stringify(facts));
    });
  };
  socket.on('connect', pump);
}

function main(): void {
  const [scenario, address = '', port = '0', bytes = '0'] = process.argv.slice(2);
  switch (scenario) {
    case 'segments':
      return segmentsScenario();
    case 'tcp-sink':
      return sinkScenario(address, Number(port));
    case 'tcp-source':
      return sourceScenario(address, Number(port), Number(bytes));
    default:
      throw new Error(`unknown scenario "${scenario}"`);
  }
}

if (require.main === module) main();
