// flanneld's IPv6 masquerade rules (MasqIP6Rules / nftables addMasqRules with family ip6), without root: the rules as
// text for ip6tables and `table ip6 vxtun`, and the keeper installing, checking, restoring and removing both families
// (or only IPv6 in an IPv6-only network) against a fake host that keeps iptables and ip6tables apart.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  type CommandRunner, IpMasq, iptablesBinary, iptablesMasqRules, iptablesRestorePayload, nftMasqRules, nftScript, nftTable,
  parseNftChainRules,
} from '../../src/control/ip-masq';
import type { Logger } from '../../src/control/log';
import { parseCidr } from '../../src/wire/address';
import { parseCidr6 } from '../../src/wire/address6';

const Masq6 = suite('ip masquerade for IPv6 (flannel MasqIP6Rules)');
const networks = { network: parseCidr('10.17.0.0/16'), subnet: parseCidr('10.17.3.0/24') };
const networks6 = { network: parseCidr6('fd00:17::/56'), subnet: parseCidr6('fd00:17:0:3::/64') };

function recordingLog(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (msg: string, fields?: Record<string, unknown>) => void lines.push(`${level} ${msg} ${JSON.stringify(fields ?? {})}`);
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** A fake host with separate iptables and ip6tables rule sets ("CHAIN argv") and nft tables ("ip" / "ip6" -> script). */
function fakeHost(tools: string[]) {
  const rules: Record<string, Set<string>> = { iptables: new Set(), ip6tables: new Set() };
  const chain: Record<string, boolean> = { iptables: false, ip6tables: false };
  const nft = new Map<string, string>();
  const run: CommandRunner = async (file, args, input) => {
    const base = file.replace(/-(save|restore)$/, '');
    if (!tools.includes(base)) throw Object.assign(new Error(`${file}: not found`), { code: 'ENOENT' });
    if (args[0] === '--version') return { stdout: file === 'nft' ? 'nftables v1.0.6 (Lester Gooch #5)\n' : 'iptables v1.8.9 (nf_tables)\n', stderr: '' };
    if (file === 'nft') {
      if (args[0] === '-f') {
        const family = /^add table (ip6?) /.exec(input!)![1]!;
        if (input!.includes('{')) nft.set(family, input!.split('\n').slice(2).join('\n'));
        else nft.delete(family);
        return { stdout: '', stderr: '' };
      }
      const listed = nft.get(args[2]!); // list chain FAMILY vxtun postrouting
      if (listed === undefined) throw new Error(`nft list: Error: No such file or directory; did you mean table ‘vxtun’ in family ${args[2]}?`);
      return { stdout: listed, stderr: '' };
    }
    const set = rules[base]!;
    if (file.endsWith('-restore')) {
      chain[base] = true;
      for (const r of [...set]) if (r.startsWith('FLANNEL-POSTRTG ')) set.delete(r);
      for (const line of input!.split('\n')) {
        const m = /^-(A|I) (\S+) (?:1 )?(.*)$/.exec(line);
        if (m) set.add(`${m[2]} ${m[3]!.replace(/"/g, '')}`);
      }
      return { stdout: '', stderr: '' };
    }
    if (file.endsWith('-save')) return { stdout: chain[base] ? ':FLANNEL-POSTRTG - [0:0]\n' : '', stderr: '' };
    const a = args.slice(2); // after -w 5
    if (a[2] === '-C') {
      if (set.has(`${a[3]} ${a.slice(4).join(' ')}`)) return { stdout: '', stderr: '' };
      throw new Error(`${file}: Bad rule (does a matching rule exist in that chain?).`);
    }
    if (a[2] === '-D') set.delete(`${a[3]} ${a.slice(4).join(' ')}`);
    if (a[2] === '-F') for (const r of [...set]) if (r.startsWith(`${a[3]} `)) set.delete(r);
    if (a[2] === '-X') chain[base] = false;
    return { stdout: '', stderr: '' };
  };
  return { run, rules, chain, nft };
}

Masq6("ip6tables rules are flannel's MasqIP6Rules shape: IPv6 ranges, ff00::/8 as multicast", () => {
  const comment = ['-m', 'comment', '--comment', 'flanneld masq'];
  assert.is(iptablesBinary(networks6), 'ip6tables');
  assert.is(iptablesBinary(networks), 'iptables');
  assert.equal(iptablesMasqRules(networks6, true), [
    ['-m', 'mark', '--mark', '0x4000/0x4000', ...comment, '-j', 'RETURN'],
    ['-s', 'fd00:17::/56', '-d', 'fd00:17::/56', ...comment, '-j', 'RETURN'],
    ['!', '-s', 'fd00:17::/56', '-d', 'fd00:17:0:3::/64', ...comment, '-j', 'RETURN'],
    ['-s', 'fd00:17::/56', '!', '-d', 'ff00::/8', ...comment, '-j', 'MASQUERADE', '--random-fully'],
    ['!', '-s', 'fd00:17::/56', '-d', 'fd00:17::/56', ...comment, '-j', 'MASQUERADE', '--random-fully'],
  ]);
  assert.not.match(iptablesRestorePayload(networks6, false, true), /224\.0\.0\.0|10\.17/);
  assert.match(iptablesRestorePayload(networks6, false, true), /\n-I POSTROUTING 1 -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG\nCOMMIT\n$/);
});

Masq6('nftables: `table ip6 vxtun` with ip6 matches; a listing parses back to the same rules; the IPv4 table is unchanged', () => {
  assert.is(nftTable(networks6), 'table ip6 vxtun');
  assert.is(nftTable(networks), 'table ip vxtun');
  const script = nftScript(networks6, true);
  assert.match(script, /^add table ip6 vxtun\ndelete table ip6 vxtun\ntable ip6 vxtun \{\n\tchain postrouting \{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n/);
  assert.equal(parseNftChainRules(script.split('\n').slice(2).join('\n')), nftMasqRules(networks6, true));
  assert.equal(nftMasqRules(networks6, true).slice(1), [
    'ip6 saddr fd00:17::/56 ip6 daddr fd00:17::/56 return comment "flanneld masq"',
    'ip6 saddr != fd00:17::/56 ip6 daddr fd00:17:0:3::/64 return comment "flanneld masq"',
    'ip6 saddr fd00:17::/56 ip6 daddr != ff00::/8 masquerade fully-random comment "flanneld masq"',
    'ip6 saddr != fd00:17::/56 ip6 daddr fd00:17::/56 masquerade fully-random comment "flanneld masq"',
  ]);
  assert.match(nftScript(networks, true), /^add table ip vxtun\n/);
});

Masq6('dual stack, iptables: both families installed, a rule removed from ip6tables alone is restored, stop removes both', async () => {
  const host = fakeHost(['iptables', 'ip6tables']);
  const log = recordingLog();
  const masq = await IpMasq.start({ networks, networks6, log, run: host.run, resyncMs: 0 });
  assert.is(masq.status().state, 'installed', log.lines.join('\n'));
  assert.is(masq.status().where, 'FLANNEL-POSTRTG (nat table, iptables and ip6tables)');
  for (const bin of ['iptables', 'ip6tables']) {
    assert.ok(host.rules[bin]!.has('POSTROUTING -m comment --comment flanneld masq -j FLANNEL-POSTRTG'), bin);
    assert.is([...host.rules[bin]!].filter((r) => r.startsWith('FLANNEL-POSTRTG ')).length, 5, bin);
  }
  assert.ok([...host.rules.ip6tables!].some((r) => r.includes('! -d ff00::/8')));
  assert.not.ok([...host.rules.ip6tables!].some((r) => r.includes('10.17.')), 'no IPv4 range in ip6tables');
  assert.match(log.lines.find((l) => l.includes('installed'))!, /"network6":"fd00:17::\/56","subnet6":"fd00:17:0:3::\/64"/);

  await masq.ensure();
  assert.is(masq.status().restored, 0);
  host.rules.ip6tables!.delete([...host.rules.ip6tables!].find((r) => r.includes('ff00::/8'))!);
  await masq.ensure();
  assert.is(masq.status().restored, 1, 'the IPv6 family alone was found missing');
  assert.is([...host.rules.ip6tables!].filter((r) => r.startsWith('FLANNEL-POSTRTG ')).length, 5);
  assert.match(log.lines.find((l) => l.includes('restored them'))!, /ip6tables FLANNEL-POSTRTG .*ff00::\/8/);
  await masq.stop();
  assert.is(host.rules.iptables!.size + host.rules.ip6tables!.size, 0);
  assert.not.ok(host.chain.iptables || host.chain.ip6tables);
  assert.is(masq.status().state, 'removed');
});

Masq6('a failing ip6tables (no IPv6 NAT) makes the state failing with the IPv6 named; the IPv4 rules are still installed', async () => {
  const host = fakeHost(['iptables']); // ip6tables missing: every ip6tables command fails
  const log = recordingLog();
  const masq = await IpMasq.start({ networks, networks6, log, run: host.run, resyncMs: 0 });
  assert.is(masq.status().state, 'failing');
  assert.match(masq.status().problem!, /installing the IPv6 ip masquerade rules failed/);
  assert.is([...host.rules.iptables!].filter((r) => r.startsWith('FLANNEL-POSTRTG ')).length, 5);
  await masq.ensure();
  const errors = log.lines.filter((l) => l.startsWith('error')).length;
  await masq.ensure();
  await masq.ensure();
  assert.is(log.lines.filter((l) => l.startsWith('error')).length, errors, 'the same failure is not logged again on every check');
  assert.is(masq.status().state, 'failing');
});

Masq6('IPv6-only, nftables: only `table ip6 vxtun`; its removal is noticed and restored; stop deletes it', async () => {
  const host = fakeHost(['nft']);
  const log = recordingLog();
  const masq = await IpMasq.start({ networks6, log, run: host.run, resyncMs: 0 });
  assert.is(masq.status().state, 'installed', log.lines.join('\n'));
  assert.is(masq.status().where, 'table ip6 vxtun');
  assert.equal([...host.nft.keys()], ['ip6']);
  await masq.ensure();
  assert.is(masq.status().restored, 0, 'the listing of our own table compares equal');
  host.nft.delete('ip6');
  await masq.ensure();
  assert.is(masq.status().restored, 1);
  assert.ok(host.nft.has('ip6'));
  await masq.stop();
  assert.is(host.nft.size, 0);
});

Masq6('dual stack, nftables: both tables; no networks at all is a caller error', async () => {
  const host = fakeHost(['nft']);
  const masq = await IpMasq.start({ networks, networks6, log: recordingLog(), run: host.run, resyncMs: 0 });
  assert.is(masq.status().where, 'table ip vxtun, table ip6 vxtun');
  assert.equal([...host.nft.keys()].sort(), ['ip', 'ip6']);
  await masq.stop();
  assert.is(host.nft.size, 0);
  try {
    await IpMasq.start({ log: recordingLog(), run: host.run, resyncMs: 0 });
    assert.unreachable('must throw');
  } catch (error) {
    assert.match((error as Error).message, /needs an IPv4 or an IPv6 network/);
  }
});

Masq6.run();
