// The engine over a TUN whose reads hand slots back permuted (io_uring: native/uring.cc moves filled slots first):
// every packet still crosses intact and in order, and every slot returns to the pool.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { fakePair } from '../support/fake-nodes';
import { ip, udpPacket } from '../support/packets';

const test = suite('engine over io_uring-ordered TUN reads (fake)');

async function settle(): Promise<void> {
  for (let turn = 0; turn < 200; turn++) await new Promise((resolve) => setImmediate(resolve));
}

for (const encap of ['vxlan', 'ipip'] as const) {
  test(`${encap}: 150 packets in batches of 64 cross in order; the pool is whole again`, async () => {
    const { a, b } = fakePair(encap, { tunIo: 'uring' });
    assert.is(a.tun.io, 'uring');
    const poolSize = a.pool.available;
    a.engine.start();
    b.engine.start();
    const sent = Array.from({ length: 150 }, (_, i) => udpPacket(ip('10.17.1.5'), ip('10.17.2.7'), 40000 + i, 5001, 20 + (i % 40)));
    for (const packet of sent) a.tun.inject(packet);
    await settle();
    assert.is(b.tun.written.length, 150);
    b.tun.written.forEach((packet, i) => assert.ok(packet.equals(sent[i]), `packet ${i}`));
    assert.is(a.engine.counters.drops.total + b.engine.counters.drops.total, 0);
    assert.is(a.pool.available, poolSize, 'every slot back in the pool');
    a.engine.stop();
    b.engine.stop();
  });
}

test.run();
