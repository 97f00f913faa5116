// flanneld's masquerade rules, without root: the rules as text, the tool detection, and the keeper's behaviour
// (missing tool, failing commands logged once, restoration, removal) against a fake command runner.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  type CommandRunner, IpMasq, detectFirewall, iptablesMasqRules, iptablesRestorePayload, nftMasqRules, nftScript,
  parseIptablesVersion, parseNftChainRules,
} from '../../src/control/ip-masq';
import type { Logger } from '../../src/control/log';
import { parseCidr } from '../../src/wire/address';

const Masq = suite('ip masquerade (flannel --ip-masq)');
const networks = { network: parseCidr('10.17.0.0/16'), subnet: parseCidr('10.17.3.0/24') };

function recordingLog(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => void lines.push(`${level} ${msg} ${JSON.stringify(fields ?? {})}`);
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** A fake host: `tools` present, a set of iptables rules ("CHAIN argv"), `fail` makes matching commands fail. */
function fakeHost(tools: string[], fail: (file: string, args: readonly string[]) => string | undefined = () => undefined) {
  const calls: string[] = [];
  const rules = new Set<string>();
  let chain = false;
  const run: CommandRunner = async (file, args, input) => {
    calls.push([file, ...args].join(' '));
    if (!tools.includes(file.replace(/-(save|restore)$/, ''))) throw Object.assign(new Error(`${file}: not found`), { code: 'ENOENT' });
    const failure = fail(file, args);
    if (failure !== undefined) throw new Error(`${file} ${args.join(' ')}: ${failure}`);
    if (args[0] === '--version') return { stdout: file === 'nft' ? 'nftables v1.0.6 (Lester Gooch #5)\n' : 'iptables v1.8.9 (nf_tables)\n', stderr: '' };
    if (file === 'iptables-restore') {
      chain = true;
      for (const r of [...rules]) if (r.startsWith('FLANNEL-POSTRTG ')) rules.delete(r);
      for (const line of input!.split('\n')) {
        const m = /^-(A|I) (\S+) (?:1 )?(.*)$/.exec(line);
        if (m) rules.add(`${m[2]} ${m[3]!.replace(/"/g, '')}`);
      }
      return { stdout: '', stderr: '' };
    }
    if (file === 'iptables-save') return { stdout: chain ? ':FLANNEL-POSTRTG - [0:0]\n' : '', stderr: '' };
    const a = args.slice(2); // after -w 5
    if (a[2] === '-C') {
      if (rules.has(`${a[3]} ${a.slice(4).join(' ')}`)) return { stdout: '', stderr: '' };
      throw new Error('iptables: Bad rule (does a matching rule exist in that chain?).');
    }
    if (a[2] === '-D') rules.delete(`${a[3]} ${a.slice(4).join(' ')}`);
    if (a[2] === '-F') for (const r of [...rules]) if (r.startsWith(`${a[3]} `)) rules.delete(r);
    if (a[2] === '-X') chain = false;
    return { stdout: '', stderr: '' };
  };
  return { run, calls, rules, hasChain: () => chain };
}

Masq("iptables rules are flannel's, in order, with --random-fully when the tool has it", () => {
  const comment = ['-m', 'comment', '--comment', 'flanneld masq'];
  assert.equal(iptablesMasqRules(networks, true), [
    ['-m', 'mark', '--mark', '0x4000/0x4000', ...comment, '-j', 'RETURN'],
    ['-s', '10.17.0.0/16', '-d', '10.17.0.0/16', ...comment, '-j', 'RETURN'],
    ['!', '-s', '10.17.0.0/16', '-d', '10.17.3.0/24', ...comment, '-j', 'RETURN'],
    ['-s', '10.17.0.0/16', '!', '-d', '224.0.0.0/4', ...comment, '-j', 'MASQUERADE', '--random-fully'],
    ['!', '-s', '10.17.0.0/16', '-d', '10.17.0.0/16', ...comment, '-j', 'MASQUERADE', '--random-fully'],
  ]);
  assert.not.ok(iptablesMasqRules(networks, false).flat().includes('--random-fully'));
  const payload = iptablesRestorePayload(networks, true, true);
  assert.ok(payload.startsWith('*nat\n:FLANNEL-POSTRTG - [0:0]\n-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN\n'), payload);
  assert.ok(payload.endsWith('-I POSTROUTING 1 -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG\nCOMMIT\n'), payload);
  assert.not.match(iptablesRestorePayload(networks, true, false), 'POSTROUTING');
});

Masq('nftables: a table of our own replaced whole; a listing parses back to the same rules', () => {
  const script = nftScript(networks, true);
  assert.match(script, /^add table ip vxtun\ndelete table ip vxtun\ntable ip vxtun \{\n\tchain postrouting \{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n/);
  const listing = script.split('\n').slice(2).join('\n'); // `nft list chain` prints the table block as written
  assert.equal(parseNftChainRules(listing), nftMasqRules(networks, true));
  assert.is(nftMasqRules(networks, true)[3], 'ip saddr 10.17.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random comment "flanneld masq"');
});

Masq('iptables --version: version and variant', () => {
  assert.equal(parseIptablesVersion('iptables v1.8.9 (nf_tables)'), { version: [1, 8, 9], variant: 'nf_tables' });
  assert.equal(parseIptablesVersion('iptables v1.8.9 (legacy)'), { version: [1, 8, 9], variant: 'legacy' });
  assert.equal(parseIptablesVersion('iptables v1.4.21'), { version: [1, 4, 21], variant: 'legacy' });
  assert.is(parseIptablesVersion('command not found'), undefined);
});

Masq('detection: iptables first, then nft; what is missing and what to install', async () => {
  assert.is(((await detectFirewall('auto', fakeHost(['iptables', 'nft']).run)) as { tool: string }).tool, 'iptables');
  assert.is(((await detectFirewall('auto', fakeHost(['nft']).run)) as { tool: string }).tool, 'nftables');
  assert.is(((await detectFirewall('nftables', fakeHost(['iptables', 'nft']).run)) as { tool: string }).tool, 'nftables');
  assert.is(await detectFirewall('auto', fakeHost([]).run), 'neither iptables nor nft is installed');
  assert.match(await detectFirewall('iptables', fakeHost(['nft']).run) as string, /iptables is not usable/);
});

Masq('no tool: masquerade off, said once with what to install; never throws; stop is a no-op', async () => {
  const log = recordingLog();
  const masq = await IpMasq.start({ networks, log, run: fakeHost([]).run, resyncMs: 0 });
  assert.is(masq.status().state, 'unavailable');
  assert.match(masq.status().problem!, /apt-get install iptables \(or nftables\)/);
  assert.is(log.lines.filter((l) => l.startsWith('warn')).length, 1);
  await masq.ensure();
  await masq.stop();
  assert.is(log.lines.length, 1);
});

Masq('iptables: installed with the jump first; a removed rule is restored and counted; stop removes chain and jump', async () => {
  const host = fakeHost(['iptables']);
  const log = recordingLog();
  const masq = await IpMasq.start({ networks, log, run: host.run, resyncMs: 0 });
  assert.is(masq.status().state, 'installed');
  assert.is(masq.status().where, 'FLANNEL-POSTRTG (nat table)');
  assert.ok(host.rules.has('POSTROUTING -m comment --comment flanneld masq -j FLANNEL-POSTRTG'));
  assert.is([...host.rules].filter((r) => r.startsWith('FLANNEL-POSTRTG ')).length, 5);
  await masq.ensure();
  assert.is(masq.status().restored, 0, 'nothing missing, nothing done');
  host.rules.delete([...host.rules].find((r) => r.includes('224.0.0.0/4'))!);
  await masq.ensure();
  assert.is(masq.status().restored, 1);
  assert.is([...host.rules].filter((r) => r.startsWith('FLANNEL-POSTRTG ')).length, 5);
  assert.is(log.lines.filter((l) => l.includes('restored them')).length, 1);
  await masq.stop();
  assert.is(host.rules.size, 0);
  assert.not.ok(host.hasChain());
  assert.is(masq.status().state, 'removed');
});

Masq('a failing firewall command is logged once while it keeps failing, and its end is said', async () => {
  let broken = true;
  const host = fakeHost(['iptables'], (file) => (broken && file === 'iptables-restore' ? "can't initialize iptables table `nat'" : undefined));
  const log = recordingLog();
  const masq = await IpMasq.start({ networks, log, run: host.run, resyncMs: 0 });
  assert.is(masq.status().state, 'failing');
  assert.match(masq.status().problem!, /can't initialize iptables table/);
  await masq.ensure();
  await masq.ensure();
  assert.is(log.lines.filter((l) => l.startsWith('error')).length, 1, log.lines.join('\n'));
  broken = false;
  await masq.ensure();
  assert.is(masq.status().state, 'installed');
  assert.is(masq.status().problem, undefined);
  assert.is(masq.status().restored, 0, 'our own failed install is not a removal by someone else');
  assert.is(log.lines.filter((l) => l.includes('work again')).length, 1);
});

Masq.run();
