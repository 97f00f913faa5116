// The DF bit of the outer IPv4 header, chosen as the kernel's tunnels choose it (ip-link(8) `df set|unset|inherit`;
// drivers/net/vxlan/vxlan_core.c vxlan_xmit_one). 'unset' (the kernel's default for vxlan) clears DF, so a smaller hop
// on the underlay fragments the outer packet instead of dropping it; 'set' sets DF on every outer packet (a smaller
// hop drops it and answers ICMP fragmentation-needed, lost where ICMP is filtered); 'inherit' copies the inner IPv4
// packet's DF bit. The socket carries the choice (IP_MTU_DISCOVER DONT / DO), so batches and UDP GSO sends keep it;
// for 'inherit' the sends go in runs of equal DF with the option switched between runs, never per packet.
import { PacketBatch } from '../io/batch';
import type { DatagramSocket, GsoSendResult } from '../io/types';

export const DF_MODES = ['unset', 'set', 'inherit'] as const;
export type DfMode = (typeof DF_MODES)[number];
export const DEFAULT_DF_MODE: DfMode = 'unset';

export function parseDfMode(text: string): DfMode {
  const mode = DF_MODES.find((m) => m === text);
  if (mode === undefined) throw new Error(`outer DF must be ${DF_MODES.join(', ')}; got "${text}"`);
  return mode;
}

/** The IPv4 DF flag: bit 0x40 of byte 6 (RFC 791, flags and fragment offset). */
const DF_BYTE = 6;
const DF_FLAG = 0x40;

/**
 * True when the datagram at slab[off...] carries an inner IPv4 packet at off + innerOffset whose DF bit is set. Not
 * IPv4 there (an ARP reply inside VXLAN) counts as DF clear. innerOffset: the encapsulation's headroom (VXLAN 22: VXLAN
 * header + inner Ethernet; IP-in-IP 0).
 */
export function innerDontFragment(slab: Buffer, off: number, innerOffset: number): boolean {
  const ip = off + innerOffset;
  return slab[ip] >> 4 === 4 && (slab[ip + DF_BYTE] & DF_FLAG) !== 0;
}

/**
 * A sender whose outer DF follows each inner packet's ('inherit'). send() splits a batch into runs of equal inner DF
 * and sends each run as one batch after switching the socket's IP_MTU_DISCOVER when the run's DF differs from the
 * last (a uniform batch is one setsockopt at most, then the batch as is). sendGso() reads the DF of the first segment:
 * segments of one TCP super-packet share it. Receiving, watching and closing go to the socket unchanged.
 */
export class DfInheritingSender implements DatagramSocket {
  readonly kind: 'udp' | 'raw';
  readonly gro?: boolean;
  /** setsockopt calls made: one per change of DF between runs (for tests and diagnostics). */
  switches = 0;
  private run: PacketBatch | undefined;
  /** The DF the socket sends with now; undefined until the first send. */
  private current: boolean | undefined;

  constructor(
    private readonly socket: DatagramSocket & { setDontFragment(on: boolean): void },
    private readonly innerOffset: number,
  ) {
    this.kind = socket.kind;
    this.gro = socket.gro;
    if (socket.recvGro !== undefined) this.recvGro = (batch, segSizes) => socket.recvGro!(batch, segSizes);
    if (socket.sendGso !== undefined) {
      this.sendGso = (buf, off, len, segmentSize, addr, port): GsoSendResult => {
        this.use(innerDontFragment(buf, off, this.innerOffset));
        return socket.sendGso!(buf, off, len, segmentSize, addr, port);
      };
    }
  }

  recvGro?(batch: PacketBatch, segSizes: Uint32Array): number;
  sendGso?(buf: Buffer, off: number, len: number, segmentSize: number, addr: number, port: number): GsoSendResult;

  recv(batch: PacketBatch): number {
    return this.socket.recv(batch);
  }

  /** As DatagramSocket.send: the count the kernel took; after a run the kernel took only part of, later runs wait. */
  send(batch: PacketBatch): number {
    const n = batch.count;
    if (n === 0) return 0;
    const { slab, offsets } = batch;
    const inner = this.innerOffset;
    const first = innerDontFragment(slab, offsets[0], inner);
    let end = 1;
    while (end < n && innerDontFragment(slab, offsets[end], inner) === first) end++;
    if (end === n) {
      this.use(first);
      return this.socket.send(batch);
    }
    if (this.run === undefined || this.run.capacity < batch.capacity || this.run.slab !== slab) {
      this.run = new PacketBatch(slab, batch.capacity); // once per slab: batches of one engine share its slab
    }
    const run = this.run;
    let total = 0;
    let start = 0;
    let df = first;
    for (;;) {
      run.count = 0;
      for (let i = start; i < end; i++) run.push(offsets[i], batch.lengths[i], batch.addrs[i], batch.ports[i]);
      this.use(df);
      const sent = this.socket.send(run);
      total += sent;
      if (sent < end - start || end === n) return total;
      start = end;
      df = !df;
      end = start + 1;
      while (end < n && innerDontFragment(slab, offsets[end], inner) === df) end++;
    }
  }

  watch(onReadable: () => void): void {
    this.socket.watch(onReadable);
  }

  close(): void {
    this.socket.close();
  }

  private use(df: boolean): void {
    if (this.current === df) return;
    this.socket.setDontFragment(df);
    this.current = df;
    this.switches++;
  }
}

/**
 * The senders to hand the engine for `mode`: 'unset' / 'set' configure each socket once and return them as they are;
 * 'inherit' wraps each in a DfInheritingSender. Throws when a socket cannot choose its DF bit.
 */
export function applyOuterDf(sockets: readonly DatagramSocket[], mode: DfMode, innerOffset: number): DatagramSocket[] {
  return sockets.map((socket) => {
    if (socket.setDontFragment === undefined) throw new Error(`a ${socket.kind} socket that cannot choose its outer DF bit`);
    if (mode !== 'inherit') {
      socket.setDontFragment(mode === 'set');
      return socket;
    }
    return new DfInheritingSender(socket as DatagramSocket & { setDontFragment(on: boolean): void }, innerOffset);
  });
}
