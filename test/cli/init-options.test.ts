// `vxtun init` refuses an option its backend would ignore, before the store is opened, instead of dropping it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { inapplicableOption, initCommand } from '../../src/cli/commands/init';

const test = suite('cli: init options per backend');

/** Runs `vxtun init ...args` in this process; resolves to the error message, or undefined when it succeeded. */
async function init(args: string[]): Promise<string | undefined> {
  const program = new Command().exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
  initCommand(program);
  const write = process.stdout.write;
  process.stdout.write = (() => true) as typeof process.stdout.write;
  try {
    await program.parseAsync(['init', ...args], { from: 'user' });
    return undefined;
  } catch (err) {
    return (err as Error).message;
  } finally {
    process.stdout.write = write;
  }
}

test('inapplicableOption: each backend-specific option names the backends it applies to', () => {
  const only = (...names: string[]) => (name: string) => names.includes(name);
  assert.is(inapplicableOption('ipip', only('vni')), '--vni applies to the vxlan backend only');
  assert.is(inapplicableOption('bgp', only('port')), '--port applies to the vxlan backend only');
  assert.is(inapplicableOption('host-gw', only('directRouting')), '--direct-routing applies to the vxlan and ipip backends only');
  assert.is(inapplicableOption('vxlan', only('encap')), '--encap applies to the bgp backend only');
  assert.is(inapplicableOption('ipip', only('bfd')), '--bfd applies to the bgp backend only');
  assert.is(inapplicableOption('vxlan', only('vni', 'port', 'directRouting')), undefined);
  assert.is(inapplicableOption('ipip', only('directRouting')), undefined);
  assert.is(inapplicableOption('bgp', only('as', 'encap', 'routeReflectors', 'gracefulRestart', 'bfd')), undefined);
  assert.is(inapplicableOption('host-gw', only()), undefined);
});

test('init: what the user typed counts, not the defaults of --vni and --port', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vxtun-init-options-'));
  const store = `file:${join(dir, 'store')}`;
  try {
    // Refused before the store is opened: this one does not exist.
    const nowhere = 'file:/nonexistent/vxtun-store';
    assert.is(await init(['--store', nowhere, '--network', '10.17.0.0/16', '--backend', 'ipip', '--vni', '5']), '--vni applies to the vxlan backend only');
    assert.is(await init(['--store', nowhere, '--network', '10.17.0.0/16', '--backend', 'bgp', '--port', '4789']), '--port applies to the vxlan backend only');
    assert.is(await init(['--store', nowhere, '--network', '10.17.0.0/16', '--backend', 'host-gw', '--direct-routing']), '--direct-routing applies to the vxlan and ipip backends only');
    assert.is(await init(['--store', nowhere, '--network', '10.17.0.0/16', '--encap', 'ipip']), '--encap applies to the bgp backend only');
    for (const backend of ['ipip', 'host-gw', 'bgp']) {
      assert.is(await init(['--store', store, '--network', '10.17.0.0/16', '--backend', backend, '--force']), undefined, backend);
    }
    assert.is(await init(['--store', store, '--network', '10.17.0.0/16', '--backend', 'ipip', '--direct-routing', '--force']), undefined);
    assert.is(await init(['--store', store, '--network', '10.17.0.0/16', '--vni', '5', '--port', '8472', '--direct-routing', '--force']), undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
