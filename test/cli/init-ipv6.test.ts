// `vxtun init --ipv6-network CIDR [--ipv6-subnet-len N] [--ipv6-only]`: flannel's dual-stack and IPv6-only configs.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { familyOptionsProblem, initCommand } from '../../src/cli/commands/init';

const test = suite('cli: init, IPv6');

/** Runs `vxtun init ...args`; resolves to what it printed, or throws its error. */
async function init(args: string[]): Promise<string> {
  const program = new Command().exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
  initCommand(program);
  const write = process.stdout.write;
  let out = '';
  process.stdout.write = ((chunk: string) => {
    out += chunk;
    return true;
  }) as typeof process.stdout.write;
  try {
    await program.parseAsync(['init', ...args], { from: 'user' });
    return out;
  } finally {
    process.stdout.write = write;
  }
}

async function error(args: string[]): Promise<string> {
  try {
    await init(args);
  } catch (err) {
    return (err as Error).message;
  }
  assert.unreachable(`init ${args.join(' ')} succeeded`);
  return '';
}

test('init --subnet-min/--subnet-max write flannel\'s SubnetMin/SubnetMax; one outside the network is refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vxtun-init-range-'));
  const store = `file:${join(dir, 'store')}`;
  try {
    assert.match(await init(['--store', store, '--network', '10.17.0.0/16', '--subnet-min', '10.17.1.0', '--subnet-max', '10.17.199.0']), /"SubnetMin":"10\.17\.1\.0","SubnetMax":"10\.17\.199\.0"/);
    assert.match(await error(['--store', store, '--network', '10.17.0.0/16', '--subnet-max', '10.18.0.0', '--force']), /SubnetMax 10\.18\.0\.0 is not in Network/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('familyOptionsProblem names what does not go together', () => {
  assert.is(familyOptionsProblem({ ipv6Only: true }), '--ipv6-only needs --ipv6-network CIDR');
  assert.match(familyOptionsProblem({ ipv6Only: true, ipv6Network: 'fd00::/56', network: '10.0.0.0/16' })!, /--network does not apply with --ipv6-only/);
  assert.match(familyOptionsProblem({ ipv6Only: true, ipv6Network: 'fd00::/56', subnetLen: 24 })!, /use --ipv6-subnet-len/);
  assert.match(familyOptionsProblem({})!, /required option '--network <cidr>' not specified/);
  assert.is(familyOptionsProblem({ network: '10.0.0.0/16', ipv6SubnetLen: 64 }), '--ipv6-subnet-len needs --ipv6-network CIDR');
  assert.is(familyOptionsProblem({ network: '10.0.0.0/16', ipv6Network: 'fd00::/56', ipv6SubnetLen: 64 }), undefined);
  assert.is(familyOptionsProblem({ ipv6Only: true, ipv6Network: 'fd00::/56' }), undefined);
});

test('init writes dual-stack and IPv6-only configs; refuses ipip and bgp with IPv6, and bad CIDRs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vxtun-init-ipv6-'));
  const store = `file:${join(dir, 'store')}`;
  try {
    assert.is(
      await init(['--store', store, '--network', '10.244.0.0/16', '--ipv6-network', 'fd00:10:244::/56', '--ipv6-subnet-len', '64', '--port', '8472']),
      '/coreos.com/network/config = {"EnableIPv6":true,"Network":"10.244.0.0/16","IPv6Network":"fd00:10:244::/56","IPv6SubnetLen":64,' +
        '"Backend":{"Type":"vxlan","VNI":1,"Port":8472}}\n',
    );
    assert.is(
      await init(['--store', store, '--ipv6-only', '--ipv6-network', 'fd00:10:244::/56', '--force']),
      '/coreos.com/network/config = {"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan","VNI":1,"Port":4789}}\n',
    );
    assert.match(await error(['--store', store, '--network', '10.244.0.0/16', '--ipv6-network', 'fd00::/56', '--backend', 'ipip', '--force']), /EnableIPv6 is not supported with backend ipip: IPv6 is carried by the vxlan and host-gw backends/);
    assert.match(await error(['--store', store, '--network', '10.244.0.0/16', '--ipv6-network', 'fd00::/56', '--backend', 'bgp', '--force']), /EnableIPv6 is not supported with backend bgp/);
    assert.match(await error(['--store', store, '--network', '10.244.0.0/16', '--ipv6-network', '10.0.0.0/8']), /IPv6/);
    assert.match(await error(['--store', store, '--network', '10.244.0.0/16', '--ipv6-network', 'fd00::/56', '--ipv6-subnet-len', '57', '--force']), /IPv6SubnetLen 57 is too short/);
    assert.match(await error(['--store', 'file:/nonexistent/vxtun-store', '--ipv6-only']), /--ipv6-only needs --ipv6-network/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
