// What the engine does when its system calls fail, when the kernel hands over more than the queues were sized for,
// and when a packet does not fit its slot: never throws, counts every loss by reason, returns every slot.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { PacketBatch } from '../../src/io/batch';
import { fakeSystemError } from '../../src/io/fake';
import { classifyFault } from '../../src/dataplane/io-faults';
import { ARP_REQUEST, emitArp } from '../../src/wire/arp';
import { echoRequest, ip } from '../support/packets';
import { fakePair, recordingLog, vxlanFrame } from '../support/fake-nodes';

const Faults = suite('engine faults');

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

Faults('PacketBatch.push refuses past its capacity and changes nothing', () => {
  const batch = new PacketBatch(Buffer.alloc(64), 2);
  assert.ok(batch.push(0, 10));
  assert.ok(batch.push(10, 10));
  assert.ok(batch.full);
  assert.not.ok(batch.push(20, 10));
  assert.is(batch.count, 2);
  assert.equal([...batch.offsets], [0, 10]);
});

Faults('errno classes: transient codes, device-gone codes, and our own bugs', () => {
  for (const code of ['ENOBUFS', 'ENOMEM', 'EPERM', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNREFUSED', 'EMSGSIZE']) {
    assert.is(classifyFault(fakeSystemError(code, 1, 'sendmmsg')), 'transient', code);
  }
  for (const code of ['EBADFD', 'EIO', 'ENODEV', 'EBADF', 'ENOTSOCK', 'EFAULT']) {
    assert.is(classifyFault(fakeSystemError(code, 1, 'read')), 'fatal', code);
  }
  assert.is(classifyFault(new RangeError('packet 3 lies outside the slab')), 'internal');
});

Faults('transient EPERM on the underlay send (a firewall): counted as underlay/send-EPERM, logged once with advice, forwarding resumes', () => {
  const log = recordingLog();
  const { a, b } = fakePair('vxlan', { log });
  a.socket.failures.set('send', fakeSystemError('EPERM', 1, 'sendmmsg'));
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < 3; i++) a.tun.inject(echoRequest(ip('10.17.1.0'), ip('10.17.2.0'), 56, { sequence: i }));
    a.engine.pumpOutbound();
  }
  assert.is(a.engine.counters.drops.get('underlay', 'send-EPERM'), 6);
  assert.is(log.lines.length, 1, JSON.stringify(log.lines));
  assert.is(log.lines[0].level, 'warn');
  assert.match(log.lines[0].msg, 'EPERM');
  assert.match(log.lines[0].msg, /firewall/);
  assert.is(a.pool.inUse, 0, 'every slot back in the pool');
  assert.not.ok(a.engine.isStopped);
  a.socket.failures.set('send', undefined);
  a.tun.inject(echoRequest(ip('10.17.1.0'), ip('10.17.2.0')));
  a.engine.pumpOutbound();
  b.engine.pumpInbound();
  assert.is(b.tun.written.length, 1, 'forwarding goes on');
});

Faults('transient ENOBUFS on the TUN read: counted per failed call as tun/read-ENOBUFS, logged once; the queue is read after', () => {
  const log = recordingLog();
  const { a, b } = fakePair('vxlan', { log });
  a.tun.failures.set('read', fakeSystemError('ENOBUFS', 105, 'read'));
  a.tun.inject(echoRequest(ip('10.17.1.0'), ip('10.17.2.0')));
  a.engine.pumpOutbound();
  a.engine.pumpOutbound();
  assert.is(a.engine.counters.drops.get('tun', 'read-ENOBUFS'), 2);
  assert.is(log.lines.length, 1);
  assert.match(log.lines[0].msg, /buffer memory/);
  assert.is(a.pool.inUse, 0);
  a.tun.failures.set('read', undefined);
  a.engine.pumpOutbound();
  b.engine.pumpInbound();
  assert.is(b.tun.written.length, 1);
});

Faults('transient ENOMEM on the underlay receive and ENOBUFS on the TUN write: counted, slots back', () => {
  const log = recordingLog();
  const { a, b } = fakePair('vxlan', { log });
  b.socket.failures.set('recv', fakeSystemError('ENOMEM', 12, 'recvmmsg'));
  a.tun.inject(echoRequest(ip('10.17.1.0'), ip('10.17.2.0')));
  a.engine.pumpOutbound();
  b.engine.pumpInbound();
  assert.is(b.engine.counters.drops.get('underlay', 'recv-ENOMEM'), 1);
  b.socket.failures.set('recv', undefined);
  b.tun.failures.set('write', fakeSystemError('ENOBUFS', 105, 'write'));
  b.engine.pumpInbound();
  assert.is(b.engine.counters.drops.get('tun', 'write-ENOBUFS'), 1);
  assert.is(b.tun.written.length, 0);
  assert.is(b.pool.inUse, 0);
  assert.is(log.lines.length, 2);
});

Faults('our TUN deleted (EBADFD on read): the engine stops, closes its devices and calls onFatal exactly once', async () => {
  const fatal: Error[] = [];
  const log = recordingLog();
  const { a } = fakePair('vxlan', { log, onFatal: (e) => fatal.push(e) });
  a.tun.failures.set('read', fakeSystemError('EBADFD', 77, 'read'));
  a.tun.inject(echoRequest(ip('10.17.1.0'), ip('10.17.2.0')));
  a.engine.pumpOutbound();
  a.engine.pumpOutbound();
  a.engine.pumpInbound();
  assert.ok(a.engine.isStopped);
  assert.is(a.pool.inUse, 0);
  await nextTurn();
  await nextTurn();
  assert.is(fatal.length, 1);
  assert.match(fatal[0].message, /TUN device vxtun1 is gone/);
  assert.match(fatal[0].message, /EBADFD/);
  assert.ok(a.tun.closed && a.socket.closed, 'devices closed');
  assert.is(log.lines.length, 0, 'the caller logs the fatal error, once');
});

Faults('the underlay socket broken (EBADF on send): onFatal once, slots back, nothing thrown', async () => {
  const fatal: Error[] = [];
  const { a } = fakePair('ipip', { onFatal: (e) => fatal.push(e) });
  a.socket.failures.set('send', fakeSystemError('EBADF', 9, 'sendmmsg'));
  for (let i = 0; i < 5; i++) a.tun.inject(echoRequest(ip('10.17.1.0'), ip('10.17.2.0'), 56, { sequence: i }));
  a.engine.pumpOutbound();
  await nextTurn();
  assert.is(fatal.length, 1);
  assert.match(fatal[0].message, /underlay raw IP-in-IP socket is unusable/);
  assert.is(a.pool.inUse, 0);
});

Faults('a bug of ours (a RangeError from a call) is counted as engine/internal-error and logged once with its stack', () => {
  const log = recordingLog();
  const { a } = fakePair('vxlan', { log });
  a.tun.failures.set('read', new RangeError('packet 3 lies outside the slab'));
  a.engine.pumpOutbound();
  a.engine.pumpOutbound();
  assert.is(a.engine.counters.drops.get('engine', 'internal-error'), 2);
  assert.is(log.lines.length, 1);
  assert.is(log.lines[0].level, 'error');
  assert.ok(typeof log.lines[0].fields?.stack === 'string');
  assert.not.ok(a.engine.isStopped);
  assert.is(a.pool.inUse, 0);
});

Faults('a TUN read longer than its slot (MTU raised by hand) is dropped as tun/too-long; its batch-mates go on intact', () => {
  const { a, b } = fakePair('vxlan', { slotSize: 2048 });
  const jumbo = echoRequest(ip('10.17.1.0'), ip('10.17.2.0'), 3000, { dontFragment: false });
  const after = echoRequest(ip('10.17.1.0'), ip('10.17.2.0'), 56, { sequence: 2 });
  a.tun.inject(jumbo);
  a.tun.inject(after);
  a.engine.pumpOutbound();
  b.engine.pumpInbound();
  assert.is(a.engine.counters.drops.get('tun', 'too-long'), 1);
  assert.is(a.engine.counters.underlayOut.packets, 1);
  assert.equal(b.tun.written, [after]);
  assert.is(a.pool.inUse, 0);
});

Faults('UDP GRO: 64 buffers of 128 segments each (8,192 inner packets, twice the queue) all reach the TUN', () => {
  const { a, b } = fakePair('vxlan', { gro: true });
  const inner = echoRequest(ip('10.17.1.5'), ip('10.17.2.7'), 8);
  const frame = vxlanFrame(inner, a.mac, b.mac);
  const segments = 128;
  const buffer = Buffer.concat(Array.from({ length: segments }, () => frame));
  for (let i = 0; i < 64; i++) b.socket.injectGro(buffer, frame.length, a.underlayIp, 40000);
  b.engine.pumpInbound();
  assert.is(b.engine.counters.drops.total, 0, JSON.stringify(b.engine.counters.drops));
  assert.is(b.tun.written.length, 64 * segments);
  assert.is(b.pool.inUse, 0);
});

Faults('UDP GRO: 8,192 ARP requests for our VTEP address in one receive are all answered', () => {
  const { net, a, b } = fakePair('vxlan', { gro: true });
  const request = Buffer.alloc(28);
  emitArp({ operation: ARP_REQUEST, senderMac: a.mac, senderIp: ip('10.17.1.0'), targetMac: 0, targetIp: ip('10.17.2.0') }, request, 0);
  const frame = vxlanFrame(request, a.mac, 0xffffffffffff, 1, 0x0806);
  const buffer = Buffer.concat(Array.from({ length: 128 }, () => frame));
  for (let i = 0; i < 64; i++) b.socket.injectGro(buffer, frame.length, a.underlayIp, 40000);
  b.engine.pumpInbound();
  assert.is(b.engine.counters.arpReplies, 8192);
  assert.is(net.log.filter((d) => d.from === b.underlayIp).length, 8192);
  assert.is(b.engine.counters.drops.total, 0);
  assert.is(b.pool.inUse, 0);
});

Faults.run();
