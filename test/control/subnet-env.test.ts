import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSubnetEnv, readSubnetEnv, writeSubnetEnv } from '../../src/control/subnet-env';
import { formatCidr, parseCidr } from '../../src/wire/address';

const test = suite('control: subnet.env');

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'vxt-subnet-env-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('writes flannel\'s format (first usable IP), creating parent directories, and reads it back', () =>
  withTempDir(async (dir) => {
    const path = join(dir, 'run', 'flannel', 'subnet.env');
    const env = { network: parseCidr('10.17.0.0/16'), subnet: parseCidr('10.17.1.0/24'), mtu: 1450, ipMasq: true };
    await writeSubnetEnv(path, env);
    assert.is(
      await readFile(path, 'utf8'),
      'FLANNEL_NETWORK=10.17.0.0/16\nFLANNEL_SUBNET=10.17.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n',
    );
    assert.equal(await readSubnetEnv(path), env);
    // No temporary file left beside it.
    assert.equal(await readdir(join(dir, 'run', 'flannel')), ['subnet.env']);
  }),
);

test('rewriting replaces the file whole', () =>
  withTempDir(async (dir) => {
    const path = join(dir, 'subnet.env');
    await writeSubnetEnv(path, { network: parseCidr('10.17.0.0/16'), subnet: parseCidr('10.17.1.0/24'), mtu: 1450, ipMasq: true });
    await writeSubnetEnv(path, { network: parseCidr('10.0.0.0/8'), subnet: parseCidr('10.9.8.0/26'), mtu: 1480, ipMasq: false });
    const back = await readSubnetEnv(path);
    assert.ok(back);
    assert.is(formatCidr(back.subnet), '10.9.8.0/26');
    assert.is(back.mtu, 1480);
    assert.is(back.ipMasq, false);
    assert.equal(await readdir(dir), ['subnet.env']);
  }),
);

test('absent file reads as undefined', () =>
  withTempDir(async (dir) => {
    assert.is(await readSubnetEnv(join(dir, 'nope', 'subnet.env')), undefined);
  }),
);

test('reads a file flanneld wrote, with IPv6 lines and comments it may carry', () => {
  const env = parseSubnetEnv(
    '# written by flanneld\nFLANNEL_NETWORK=10.17.0.0/16\nFLANNEL_SUBNET=10.17.52.1/24\nFLANNEL_IPV6_NETWORK=fc00::/48\n' +
      'FLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n',
  );
  assert.is(formatCidr(env.subnet), '10.17.52.0/24');
  assert.is(formatCidr(env.network), '10.17.0.0/16');
  assert.is(env.ipMasq, false);
});

test('a malformed file is an error naming the line', () =>
  withTempDir(async (dir) => {
    const good = ['FLANNEL_NETWORK=10.17.0.0/16', 'FLANNEL_SUBNET=10.17.1.1/24', 'FLANNEL_MTU=1450', 'FLANNEL_IPMASQ=true'];
    const cases: Array<[string[], RegExp]> = [
      [[good[0], 'garbage', ...good.slice(1)], /line 2: expected KEY=VALUE, got "garbage"/],
      [[good[0], 'FLANNEL_SUBNET=10.17.1.1', good[2], good[3]], /line 2: FLANNEL_SUBNET must be .* got "10.17.1.1"/],
      [['FLANNEL_NETWORK=10.17.0.1/16', ...good.slice(1)], /line 1: FLANNEL_NETWORK must be .* got "10.17.0.1\/16"/],
      [[good[0], good[1], 'FLANNEL_MTU=big', good[3]], /line 3: FLANNEL_MTU must be an integer from 68 to 65535, got "big"/],
      [[...good.slice(0, 3), 'FLANNEL_IPMASQ=yes'], /line 4: FLANNEL_IPMASQ must be true or false, got "yes"/],
      [good.slice(1), /FLANNEL_NETWORK is missing/],
    ];
    const path = join(dir, 'subnet.env');
    for (const [lines, expected] of cases) {
      await writeFile(path, lines.join('\n') + '\n');
      try {
        await readSubnetEnv(path);
        assert.unreachable(lines.join(' '));
      } catch (err) {
        assert.match((err as Error).message, expected);
        assert.ok((err as Error).message.startsWith(path), 'names the file');
      }
    }
  }),
);

test.run();
