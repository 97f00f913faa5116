// The TUN's cost per small packet, by I/O mode, measured in-process in a throwaway namespace (root): CPU time
// (user + system, process.cpuUsage) per 64-byte packet written and read, one system call per packet (readv/writev)
// against a batch per io_uring_enter (--tun-io uring), and UDP GSO writes (--tun-uso). CPU time, not wall time: on
// this shared machine it is what a mode costs, whatever else runs. Variants interleave round by round.
//
//   Writes: batches of 64 UDP datagrams of one flow into TUN A, routed out of the namespace's TUN B (forwarded).
//   Reads:  what the writes queued on TUN B (txqueuelen raised to hold it), drained in batches of 64.
//
//   node -r tsx/cjs bench/tun-io.ts [--rounds 5] [--packets 65536]
import { execFileSync, spawnSync } from 'node:child_process';
import { PacketBatch } from '../src/io/batch';
import { native } from '../src/io/native';
import { Tun } from '../src/io/tun';
import type { TunIoMode } from '../src/io/types';
import { parseIPv4 } from '../src/wire/address';
import { emitIpv4, IPPROTO_UDP } from '../src/wire/ipv4';
import { emitUdp } from '../src/wire/udp';

const BATCH = 64;
const SLOT = 2048;
const HEADROOM = 64;

interface Variant {
  name: string;
  io: TunIoMode;
  uso: boolean;
}

const VARIANTS: Variant[] = [
  { name: 'readv', io: 'readv', uso: false },
  { name: 'uring', io: 'uring', uso: false },
  { name: 'readv+uso', io: 'readv', uso: true },
  { name: 'uring+uso', io: 'uring', uso: true },
];

function cpuNs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
}

function sh(...args: string[]): void {
  execFileSync(args[0], args.slice(1), { stdio: 'ignore' });
}

/** One variant once: `packets` written into A (forwarded to B), then read from B. Nanoseconds of CPU per packet. */
function measure(variant: Variant, packets: number): { writeNs: number; readNs: number; idleReadNs: number; read: number; wallWriteNs: number; wallReadNs: number } {
  const a = Tun.open({ name: 'tla', mtu: 1500, address: parseIPv4('10.81.0.1'), prefixLength: 24, offload: true, io: variant.io, uso: variant.uso });
  const b = Tun.open({ name: 'tlb', mtu: 1500, address: parseIPv4('10.82.0.1'), prefixLength: 24, offload: true, io: variant.io, uso: variant.uso });
  try {
    sh('ip', 'link', 'set', 'tlb', 'txqueuelen', String(packets + 1000));
    sh('ip', 'route', 'replace', '10.83.0.0/24', 'dev', 'tlb');
    const out = new PacketBatch(Buffer.alloc(BATCH * SLOT), BATCH);
    const src = parseIPv4('10.81.0.2');
    const dst = parseIPv4('10.83.0.9');
    const fill = (): void => {
      out.count = 0;
      for (let i = 0; i < BATCH; i++) {
        const at = i * SLOT + HEADROOM;
        emitIpv4({ source: src, destination: dst, protocol: IPPROTO_UDP, payloadLength: 8 + 36, ttl: 64 }, out.slab, at);
        emitUdp({ srcPort: 40000, dstPort: 5001, payloadLength: 36, source: src, destination: dst }, out.slab, at + 20);
        out.push(at, 64);
      }
    };
    let cpu = cpuNs();
    let wall = process.hrtime.bigint();
    let written = 0;
    for (let sent = 0; sent < packets; sent += BATCH) {
      fill(); // headers are rewritten in place by a coalesced write: fresh ones each batch (same work for every variant)
      written += a.writeCoalesced(out);
    }
    const writeCpu = cpuNs() - cpu;
    const writeWall = Number(process.hrtime.bigint() - wall);
    const reads = new PacketBatch(Buffer.alloc(BATCH * SLOT), BATCH);
    cpu = cpuNs();
    wall = process.hrtime.bigint();
    let read = 0;
    for (let empty = 0; empty < 3; ) {
      reads.count = 0;
      for (let i = 0; i < BATCH; i++) reads.push(i * SLOT + HEADROOM, SLOT - HEADROOM);
      const n = b.read(reads);
      read += n;
      if (n === 0) empty++;
    }
    const readCpu = cpuNs() - cpu;
    const readWall = Number(process.hrtime.bigint() - wall);
    // A read call that finds nothing: what every wake-up pays once at its end (readv: one EAGAIN; uring: the
    // read-ahead's failed requests).
    const IDLE = 2000;
    cpu = cpuNs();
    for (let k = 0; k < IDLE; k++) {
      reads.count = 0;
      for (let i = 0; i < BATCH; i++) reads.push(i * SLOT + HEADROOM, SLOT - HEADROOM);
      b.read(reads);
    }
    const idleReadNs = (cpuNs() - cpu) / IDLE;
    if (written !== packets) throw new Error(`${variant.name}: ${written} of ${packets} written`);
    return { writeNs: writeCpu / packets, readNs: read > 0 ? readCpu / read : NaN, idleReadNs, read, wallWriteNs: writeWall / packets, wallReadNs: read > 0 ? readWall / read : NaN };
  } finally {
    a.close();
    b.close();
  }
}

function median(v: number[]): number {
  const s = [...v].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function inNamespace(rounds: number, packets: number): void {
  sh('ip', 'link', 'set', 'lo', 'up');
  sh('sysctl', '-qw', 'net.ipv4.ip_forward=1');
  sh('sysctl', '-qw', 'net.ipv4.conf.all.rp_filter=0');
  sh('sysctl', '-qw', 'net.ipv4.conf.default.rp_filter=0');
  const results = new Map<string, Array<ReturnType<typeof measure>>>();
  for (const v of VARIANTS) results.set(v.name, []);
  measure(VARIANTS[0], packets); // warm-up
  for (let round = 1; round <= rounds; round++) {
    for (const v of VARIANTS) {
      const r = measure(v, packets);
      results.get(v.name)!.push(r);
      process.stderr.write(`round ${round} ${v.name.padEnd(10)} write ${r.writeNs.toFixed(0)} ns CPU/pkt (wall ${r.wallWriteNs.toFixed(0)})  read ${r.readNs.toFixed(0)} ns CPU/pkt (wall ${r.wallReadNs.toFixed(0)}, ${r.read} pkts)  empty read call ${r.idleReadNs.toFixed(0)} ns CPU\n`);
    }
  }
  const base = results.get(VARIANTS[0].name)!;
  const baseWrite = median(base.map((r) => r.writeNs));
  const baseRead = median(base.map((r) => r.readNs));
  process.stdout.write(`medians of ${rounds} interleaved rounds of ${packets} packets of 64 B; uring available: ${native().uringAvailable}\n`);
  process.stdout.write('| variant | write CPU ns/pkt | vs readv | read CPU ns/pkt | vs readv | empty read call CPU ns | vs readv |\n|---|---|---|---|---|---|---|\n');
  const baseIdle = median(base.map((r) => r.idleReadNs));
  for (const v of VARIANTS) {
    const rs = results.get(v.name)!;
    const w = median(rs.map((r) => r.writeNs));
    const rd = median(rs.map((r) => r.readNs));
    const idle = median(rs.map((r) => r.idleReadNs));
    process.stdout.write(`| ${v.name} | ${w.toFixed(0)} | ${(w / baseWrite).toFixed(2)} | ${rd.toFixed(0)} | ${(rd / baseRead).toFixed(2)} | ${idle.toFixed(0)} | ${(idle / baseIdle).toFixed(2)} |\n`);
  }
}

function main(): void {
  const argv = process.argv.slice(2);
  const inside = argv[0] === '--inside';
  const get = (flag: string, fallback: number): number => {
    const i = argv.indexOf(flag);
    return i >= 0 ? Number(argv[i + 1]) : fallback;
  };
  const rounds = get('--rounds', 5);
  const packets = Math.ceil(get('--packets', 65536) / BATCH) * BATCH;
  if (inside) {
    inNamespace(rounds, packets);
    return;
  }
  const namespace = `vxt-tio-${process.pid}`;
  sh('ip', 'netns', 'add', namespace);
  try {
    const result = spawnSync('ip', ['netns', 'exec', namespace, process.execPath, '-r', 'tsx/cjs', __filename, '--inside', '--rounds', String(rounds), '--packets', String(packets)], { stdio: 'inherit' });
    process.exitCode = result.status ?? 1;
  } finally {
    sh('ip', 'netns', 'delete', namespace);
  }
}

main();
