// The DF bit real sockets put on the wire: UdpSocket and RawSocket with each setting, single and UDP GSO sends, as
// a raw socket sees them on the loopback of a throwaway namespace (test/net/outer-df.child.ts).
import * as path from 'path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { native } from '../../src/io/native';
import { createLab } from '../../src/lab/topology';
import type { DfFacts } from './outer-df.child';

const Df = suite('outer DF on real sockets');
const CHILD = path.join(__dirname, 'outer-df.child.ts');

Df('IP_MTU_DISCOVER as asked; single and GSO datagrams, and raw packets, carry DF exactly when set', async () => {
  const lab = await createLab({ name: `vxt-dfs${process.pid}`, nodes: 1 });
  try {
    const { stdout } = await lab.exec(lab.node(1), process.execPath, ['-r', 'tsx/cjs', CHILD], { timeoutMs: 20_000 });
    const facts = JSON.parse(stdout.trim().split('\n').pop()!) as DfFacts;
    // Linux's default (1, WANT), DONT (0), DO (2), then switched to DO and back to DONT.
    assert.equal(facts.udpModes, [1, 0, 2, 2, 0]);
    assert.equal(facts.rawModes, [1, 0, 2, 2, 0]);
    assert.equal(facts.udpUnset, [0, 0], 'single and GSO sends without DF');
    assert.equal(facts.udpSet, [1, 1], 'single and GSO sends with DF');
    assert.equal(facts.rawUnset, [0]);
    assert.equal(facts.rawSet, [1]);
  } finally {
    await lab.destroy();
  }
});

Df('the native setter refuses modes vxtun does not use, before any system call', () => {
  assert.throws(() => native().ipSetMtuDiscover(0, 3 as 0), /IP_PMTUDISC/);
});

Df.run();
