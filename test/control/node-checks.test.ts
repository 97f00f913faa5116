// Node prerequisites read from /proc: net.ipv4.ip_forward, on a file of our own.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ipForwardWarning, ipv6ForwardWarning, readIpForward, readIpv6Forward } from '../../src/control/node-checks';

test('ip_forward: "0\\n" is off, "1\\n" is on, an unreadable file is unknown; the warning says how to fix it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vxtun-node-checks-'));
  try {
    const file = join(dir, 'ip_forward');
    writeFileSync(file, '0\n');
    assert.is(readIpForward(file), false);
    writeFileSync(file, '1\n');
    assert.is(readIpForward(file), true);
    assert.is(readIpForward(join(dir, 'missing')), undefined);
    assert.match(ipForwardWarning(), 'sysctl -w net.ipv4.ip_forward=1');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('IPv6 forwarding: read the same way; the warning names net.ipv6.conf.all.forwarding', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vxtun-node-checks6-'));
  try {
    const file = join(dir, 'forwarding');
    writeFileSync(file, '0\n');
    assert.is(readIpv6Forward(file), false);
    writeFileSync(file, '1\n');
    assert.is(readIpv6Forward(file), true);
    assert.is(readIpv6Forward(join(dir, 'missing')), undefined);
    assert.match(ipv6ForwardWarning(), 'sysctl -w net.ipv6.conf.all.forwarding=1');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
