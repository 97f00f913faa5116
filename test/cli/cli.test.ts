// The built CLI as a user meets it: flags checked before anything runs, clear errors, non-zero exits.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

const CLI = join(__dirname, '..', '..', 'dist', 'cli', 'main.js');

function vxtun(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const Cli = suite('cli');
let dir = '';
let store = '';

Cli.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), 'vxtun-cli-'));
  store = `file:${join(dir, 'store')}`;
});
Cli.after.each(() => rmSync(dir, { recursive: true, force: true }));

Cli('init writes flannel-shaped config JSON that `store get` reads back', () => {
  const init = vxtun('init', '--store', store, '--network', '10.17.0.0/16', '--vni', '7', '--port', '8472');
  assert.is(init.status, 0, init.stderr);
  const got = vxtun('store', 'get', '--store', store, '/coreos.com/network/config');
  assert.is(got.status, 0, got.stderr);
  assert.equal(JSON.parse(got.stdout), { Network: '10.17.0.0/16', Backend: { Type: 'vxlan', VNI: 7, Port: 8472 } });
});

Cli('init refuses to change an existing config without --force, and names the way out', () => {
  assert.is(vxtun('init', '--store', store, '--network', '10.17.0.0/16').status, 0);
  const again = vxtun('init', '--store', store, '--network', '10.18.0.0/16');
  assert.is(again.status, 1);
  assert.match(again.stderr, /already exists.*--force/);
  assert.is(vxtun('init', '--store', store, '--network', '10.18.0.0/16', '--force').status, 0);
});

Cli('bad flags and values name the problem and exit non-zero before doing anything', () => {
  const cases: [string[], RegExp][] = [
    [['init', '--store', store, '--network', '10.17.0.1/16'], /host bits set/],
    [['init', '--network', '10.17.0.0/16', '--backend', 'udp'], /expected one of vxlan, ipip, host-gw/],
    [['init', '--network', '10.17.0.0/16', '--vni', '99999999'], /0 to 16777215/],
    [['agent', '--public-ip', '300.1.1.1'], /IPv4 address/],
    [['agent', '--public-ip', '192.0.2.1', '--bogus'], /unknown option '--bogus'/],
    [['agent', '--public-ip', '192.0.2.1', '--node-name', 'two words'], /expected a node name like node-1/],
    [['agent', '--public-ip', '192.0.2.1', '--node-name', ''], /expected a node name like node-1/],
    [['store', 'ls', '--store', 'redis://x'], /unknown store type "redis"/],
    [['store', 'ls', '--store', '/tmp/x'], /for a store directory write file:\/tmp\/x/],
    [['agent', '--public-ip', '192.0.2.1', '--tun', 'thisnameistoolongforlinux'], /option '--tun <name>' argument .*TUN name "thisnameistoolongforlinux" is too long/], // at parsing: before any lease
    [['agent', '--public-ip', '192.0.2.1', '--tun', 'a b'], /may only contain letters/],
    [['agent', '--public-ip', '192.0.2.1', '--status-socket', `/tmp/${'s'.repeat(120)}`], /socket path too long/],
    [['trace', '--proto', 'xyz'], /expected icmp, icmpv6, tcp, udp or a protocol number/],
  ];
  for (const [args, message] of cases) {
    const r = vxtun(...args);
    assert.ok(r.status !== 0 && r.status !== null, `${args.join(' ')} exited ${r.status}`);
    assert.match(r.stderr, message, args.join(' '));
  }
});

Cli('store put/ls/del round trip; a missing key is an error', () => {
  assert.is(vxtun('store', 'put', '--store', store, '/a/b', 'one').status, 0);
  assert.is(vxtun('store', 'put', '--store', store, '/a/c', 'two', '--ttl', '60').status, 0);
  assert.is(vxtun('store', 'ls', '--store', store, '/a/', '--values').stdout, '/a/b one\n/a/c two\n');
  assert.is(vxtun('store', 'del', '--store', store, '/a/b').status, 0);
  const missing = vxtun('store', 'get', '--store', store, '/a/b');
  assert.is(missing.status, 1);
  assert.match(missing.stderr, /key not found: \/a\/b/);
});

Cli('store get/ls/del of a store directory that does not exist say so and create nothing', () => {
  const missing = join(dir, 'nowhere');
  for (const args of [['ls'], ['get', '/a'], ['del', '/a']]) {
    const r = vxtun('store', ...args, '--store', `file:${missing}`);
    assert.is(r.status, 1, args.join(' '));
    assert.match(r.stderr, `no store at ${missing}: the directory does not exist`);
  }
  assert.not.ok(existsSync(missing));
});

Cli('trace --pcap names the file it could not open and why; without an agent it creates no file', () => {
  const pcap = join(dir, 'x.pcap');
  const noAgent = vxtun('trace', '--socket', join(dir, 'none.sock'), '--pcap', pcap);
  assert.is(noAgent.status, 1);
  assert.match(noAgent.stderr, /no agent is listening on/);
  assert.not.ok(existsSync(pcap));
  writeFileSync(join(dir, 'agent.sock'), ''); // stands in for a socket: the pcap is opened before connecting
  const r = vxtun('trace', '--socket', join(dir, 'agent.sock'), '--pcap', join(dir, 'no', 'x.pcap'));
  assert.is(r.status, 1);
  assert.match(r.stderr, `cannot open the pcap file ${join(dir, 'no', 'x.pcap')}: its directory does not exist`);
});

Cli('agent --help says when --public-ip is required and shows one default for --ip-masq', () => {
  const help = vxtun('agent', '--help').stdout.replace(/\s+/g, ' ');
  assert.match(help, '--public-ip <ip> required unless the network is IPv6-only ("EnableIPv4": false; then --public-ipv6 is the underlay)');
  assert.match(help, '--public-ipv6 <ip> this node\'s IPv6 underlay address (flannel\'s PublicIPv6); required in an IPv6-only network');
  assert.not.match(help, '(default) (default: true)');
});

Cli('agent with neither --public-ip nor --public-ipv6 says which to pass, before it touches anything', () => {
  const neither = vxtun('agent', '--store', store);
  assert.is(neither.status, 1);
  assert.match(neither.stderr, /pass --public-ip with this node's IPv4 underlay address \(in an IPv6-only network, --public-ipv6/);
});

Cli('agent without a network config, or with an address not on this host, says what to do', () => {
  const noConfig = vxtun('agent', '--store', store, '--public-ip', '192.0.2.1');
  assert.is(noConfig.status, 1);
  assert.match(noConfig.stderr, /vxtun init/);
  vxtun('init', '--store', store, '--network', '10.17.0.0/16');
  const notHere = vxtun('agent', '--store', store, '--public-ip', '198.51.100.77', '--subnet-file', join(dir, 'subnet.env'));
  assert.is(notHere.status, 1);
  assert.match(notHere.stderr, /no interface of this host has the address 198\.51\.100\.77/);
});

Cli.run();
