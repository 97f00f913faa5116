// `node -r tsx/cjs bench/udp6.ts [--seconds S] [--rounds N]`: the IPv6 underlay socket against the IPv4 one, side by
// side in one run over loopback (127.0.0.1 and ::1): VXLAN-sized datagrams (1450 bytes) moved per second by
// sendmmsg/recvmmsg batches of 64, and by UDP GSO sends of 44 segments received with UDP GRO. Rounds interleave the
// cases (v4, v6, v4, v6...) so that machine load falls on both alike; the table gives medians and the v6/v4 ratio.
import { PacketBatch } from '../src/io/batch';
import { UdpSocket } from '../src/io/udp';
import { ipv6Words, LOOPBACK6 } from '../src/wire/address6';

const DATAGRAM = 1450;
const BATCH = 64;
const SLOT = 65536;
/** Segments per GSO send: 44 x 1450 = 63,800 bytes, under one datagram's 65,507 (UDP_MAX_SEGMENTS is 64). */
const GSO_SEGMENTS = 44;

interface Case {
  name: string;
  family: 4 | 6;
  gso: boolean;
}

const CASES: Case[] = [
  { name: 'sendmmsg/recvmmsg', family: 4, gso: false },
  { name: 'sendmmsg/recvmmsg', family: 6, gso: false },
  { name: 'GSO/GRO', family: 4, gso: true },
  { name: 'GSO/GRO', family: 6, gso: true },
];

/** Datagrams per second delivered from one socket to another for `seconds`, one thread sending and draining. */
function measure(c: Case, seconds: number): number {
  const address = c.family === 6 ? LOOPBACK6 : 0x7f000001;
  const rx = UdpSocket.open({ address, port: 0, gro: c.gso });
  const tx = UdpSocket.open({ address, port: 0 });
  try {
    const out = new PacketBatch(Buffer.alloc(BATCH * DATAGRAM), BATCH);
    const words = ipv6Words(LOOPBACK6);
    for (let i = 0; i < BATCH; i++) {
      out.push(i * DATAGRAM, DATAGRAM, c.family === 4 ? 0x7f000001 : 0, rx.port);
      out.addrs6.set(words, 4 * i);
    }
    const inb = new PacketBatch(Buffer.alloc(BATCH * SLOT), BATCH);
    const segSizes = new Uint32Array(BATCH);
    let delivered = 0;
    const drain = (): number => {
      let got = 0;
      for (;;) {
        for (let i = 0; i < BATCH; i++) {
          inb.offsets[i] = i * SLOT;
          inb.lengths[i] = c.gso ? SLOT : DATAGRAM;
        }
        inb.count = c.gso ? 64 : BATCH;
        const n = c.gso ? rx.recvGro(inb, segSizes) : rx.recv(inb);
        if (n === 0) return got;
        for (let i = 0; i < n; i++) got += c.gso && segSizes[i] > 0 ? Math.ceil(inb.lengths[i] / segSizes[i]) : 1;
      }
    };
    const end = process.hrtime.bigint() + BigInt(Math.round(seconds * 1e9));
    const start = process.hrtime.bigint();
    while (process.hrtime.bigint() < end) {
      if (c.gso) {
        const len = GSO_SEGMENTS * DATAGRAM;
        if (c.family === 6) tx.sendGso6(out.slab, 0, len, DATAGRAM, words[0]!, words[1]!, words[2]!, words[3]!, rx.port);
        else tx.sendGso(out.slab, 0, len, DATAGRAM, 0x7f000001, rx.port);
      } else {
        tx.send(out);
      }
      delivered += drain();
    }
    delivered += drain();
    return delivered / (Number(process.hrtime.bigint() - start) / 1e9);
  } finally {
    tx.close();
    rx.close();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function main(): void {
  const argv = process.argv.slice(2);
  const get = (flag: string, fallback: number): number => {
    const at = argv.indexOf(flag);
    return at >= 0 ? Number(argv[at + 1]) : fallback;
  };
  const seconds = get('--seconds', 1);
  const rounds = get('--rounds', 5);
  const results = new Map<Case, number[]>(CASES.map((c) => [c, []]));
  for (let r = 0; r < rounds; r++) for (const c of CASES) results.get(c)!.push(measure(c, seconds));
  console.log(`UDP underlay sockets over loopback, ${DATAGRAM}-byte datagrams, ${rounds} interleaved rounds of ${seconds} s (median; min-max)`);
  for (const name of ['sendmmsg/recvmmsg', 'GSO/GRO']) {
    const [v4, v6] = [4, 6].map((family) => results.get(CASES.find((c) => c.name === name && c.family === family)!)!);
    const fmt = (xs: number[]): string => `${(median(xs) / 1e3).toFixed(0)} k/s (${(Math.min(...xs) / 1e3).toFixed(0)}-${(Math.max(...xs) / 1e3).toFixed(0)})`;
    console.log(`  ${name.padEnd(18)} IPv4 ${fmt(v4!).padEnd(24)} IPv6 ${fmt(v6!).padEnd(24)} v6/v4 ${(median(v6!) / median(v4!)).toFixed(2)}`);
  }
  const gsoGain = [4, 6].map((family) => median(results.get(CASES.find((c) => c.gso && c.family === family)!)!) /
    median(results.get(CASES.find((c) => !c.gso && c.family === family)!)!));
  console.log(`  GSO/GRO over plain batches: IPv4 x${gsoGain[0]!.toFixed(2)}, IPv6 x${gsoGain[1]!.toFixed(2)}`);
}

main();
