import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DfInheritingSender, applyOuterDf, innerDontFragment, parseDfMode } from '../../src/dataplane/outer-df';
import { PacketBatch } from '../../src/io/batch';
import { FakeNetwork } from '../../src/io/fake';
import { IPPROTO_UDP, emitIpv4 } from '../../src/wire/ipv4';
import { ip } from '../support/packets';

const Df = suite('outer DF');
const PEER = ip('192.0.2.12');
const SLOT = 128;

/** A batch of IPv4 packets, `headroom` bytes of outer header before each, DF as given; packet i's byte 27 is i. */
function batchOf(dfs: boolean[], headroom: number): PacketBatch {
  const batch = new PacketBatch(Buffer.alloc(SLOT * dfs.length), dfs.length);
  dfs.forEach((df, i) => {
    const off = i * SLOT;
    emitIpv4({ source: ip('10.17.1.1'), destination: ip('10.17.2.1'), protocol: IPPROTO_UDP, payloadLength: 8, ttl: 64, dontFragment: df }, batch.slab, off + headroom);
    batch.slab[off + headroom + 27] = i;
    batch.push(off, headroom + 28, PEER, 4789);
  });
  return batch;
}

Df('parseDfMode takes ip-link(8) words and refuses others', () => {
  assert.is(parseDfMode('unset'), 'unset');
  assert.is(parseDfMode('set'), 'set');
  assert.is(parseDfMode('inherit'), 'inherit');
  assert.throws(() => parseDfMode('on'), /unset, set, inherit/);
});

Df('innerDontFragment reads the inner IPv4 flag behind the headroom; a non-IPv4 inner (ARP) counts as clear', () => {
  const b = batchOf([true, false], 22);
  assert.ok(innerDontFragment(b.slab, 0, 22));
  assert.not.ok(innerDontFragment(b.slab, SLOT, 22));
  assert.not.ok(innerDontFragment(b.slab, 0, 0), 'byte 0 is not an IPv4 header there');
  const arp = Buffer.alloc(64);
  arp.writeUInt16BE(1, 22); // ARP hardware type: version nibble 0
  arp[28] = 0x40;
  assert.not.ok(innerDontFragment(arp, 0, 22));
});

Df('inherit: a mixed batch leaves as runs of equal DF, in order, one switch per change', () => {
  const net = new FakeNetwork();
  const socket = net.raw(ip('192.0.2.11'));
  const sender = new DfInheritingSender(socket, 0);
  const dfs = [true, true, false, false, false, true];
  assert.is(sender.send(batchOf(dfs, 0)), 6);
  assert.equal(net.log.map((d) => d.df), dfs, 'each datagram left with its inner DF');
  assert.equal(net.log.map((d) => d.data[27]), [0, 1, 2, 3, 4, 5], 'order kept');
  assert.is(socket.dfSwitches, 3, 'one setsockopt per run');
});

Df('inherit: a uniform batch is one send with at most one switch; the next uniform batch of the same DF none', () => {
  const net = new FakeNetwork();
  const socket = net.udp(ip('192.0.2.11'), 4789);
  let sends = 0;
  const send = socket.send.bind(socket);
  socket.send = (b) => { sends++; return send(b); };
  const sender = new DfInheritingSender(socket, 22);
  assert.is(sender.send(batchOf([false, false, false], 22)), 3);
  assert.is(sender.send(batchOf([false, false], 22)), 2);
  assert.is(sends, 2, 'each batch went as one batch');
  assert.is(socket.dfSwitches, 1);
  assert.ok(net.log.every((d) => d.df === false));
});

Df('inherit: when the kernel takes only part of a run, later runs wait', () => {
  const net = new FakeNetwork();
  const socket = net.raw(ip('192.0.2.11'));
  const send = socket.send.bind(socket);
  socket.send = (b) => { b.count = Math.min(b.count, 1); return send(b); }; // a full socket buffer after one
  const sender = new DfInheritingSender(socket, 0);
  assert.is(sender.send(batchOf([true, true, false], 0)), 1);
  assert.is(net.log.length, 1);
});

Df('inherit: a GSO send takes the DF of its first segment', () => {
  const net = new FakeNetwork();
  const socket = net.udp(ip('192.0.2.11'), 4789).enableGso();
  const sender = new DfInheritingSender(socket, 22);
  const b = batchOf([true, true], 22);
  assert.is(sender.sendGso!(b.slab, 0, 2 * SLOT, SLOT, PEER, 4789), 'sent');
  const c = batchOf([false, false], 22);
  assert.is(sender.sendGso!(c.slab, 0, 2 * SLOT, SLOT, PEER, 4789), 'sent');
  assert.equal(net.log.map((d) => [d.df, d.gso]), [[true, true], [true, true], [false, true], [false, true]]);
});

Df('unset and set configure each socket once and hand the sockets back as they are', () => {
  const net = new FakeNetwork();
  const sockets = [net.udp(ip('192.0.2.11'), 4789), net.udp(ip('192.0.2.11'), 40000)];
  assert.equal(applyOuterDf(sockets, 'unset', 22), sockets);
  assert.ok(sockets.every((s) => s.dontFragment === false && s.dfSwitches === 1));
  applyOuterDf(sockets, 'set', 22);
  assert.ok(sockets.every((s) => s.dontFragment === true));
  const wrapped = applyOuterDf(sockets, 'inherit', 22);
  assert.ok(wrapped.every((s) => s instanceof DfInheritingSender));
});

Df.run();
