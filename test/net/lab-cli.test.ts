// The built CLI as a user runs it: `vxtun lab up|exec|ls|down` as separate processes (embedded store or etcd), and
// `vxtun demo`.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CLI_PATH, readLabRecord } from '../../src/lab/overlay';
import { run } from '../../src/lab/shell';
import { destroyLab, labStatePath, labWorkDir, listNamespaces } from '../../src/lab/topology';

const Cli = suite('vxtun lab and demo commands');

interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

function vxtun(args: string[], timeoutMs = 60_000): CliResult {
  const result = spawnSync(process.execPath, [CLI_PATH, ...args], { encoding: 'utf8', timeout: timeoutMs });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function show(result: CliResult): string {
  return `exit ${result.status}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function goneSoon(pid: number, timeoutMs = 3_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (processAlive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}

async function labNamespaces(name: string): Promise<string[]> {
  return (await listNamespaces()).filter((ns) => ns.startsWith(`${name}-`));
}

Cli('lab up --nodes 2 --pods 2, exec ping from a pod across, ls, down detaches pods and removes everything, a second down is fine', async () => {
  const name = `vxt-cli${process.pid}`;
  try {
    const up = vxtun(['lab', 'up', '--name', name, '--nodes', '2', '--pods', '2']);
    assert.is(up.status, 0, show(up));
    assert.match(up.stdout, /overlay ready in [\d.]+ s/);
    // The `lab up` process has exited: its agents must not have gone with it.
    const record = readLabRecord(name);
    assert.ok(record, 'lab record written');
    assert.is(record!.nodes.length, 2);
    const pids = record!.nodes.map((n) => n.pid!);
    for (const pid of pids) assert.ok(processAlive(pid), `agent ${pid} still runs after lab up exited`);
    assert.equal((await labNamespaces(name)).filter((ns) => !/-p\d$/.test(ns)).sort(), [`${name}-hub`, `${name}-n1`, `${name}-n2`].sort());
    for (const node of record!.nodes) {
      assert.is(node.pods?.length, 2, `${node.name} has 2 pods`);
      for (const pod of node.pods!) assert.ok(up.stdout.includes(`${pod.name} ${pod.address}`), `table shows pod ${pod.name} ${pod.address}`);
    }
    assert.equal((await labNamespaces(name)).filter((ns) => /-p\d$/.test(ns)).sort(), [`${name}-n1-p1`, `${name}-n1-p2`, `${name}-n2-p1`, `${name}-n2-p2`]);

    const pod2 = record!.nodes[1]!.pod;
    const ping = vxtun(['lab', 'exec', '--name', name, 'n1-p2', '--', 'ping', '-c', '2', '-W', '2', pod2]);
    assert.is(ping.status, 0, show(ping));
    assert.match(ping.stdout, /2 packets transmitted, 2 received/);
    const fromNode = vxtun(['lab', 'exec', '--name', name, 'n1', '--', 'ping', '-c', '1', '-W', '2', pod2]);
    assert.is(fromNode.status, 0, show(fromNode));

    const failing = vxtun(['lab', 'exec', '--name', name, 'n1', '--', 'sh', '-c', 'exit 7']);
    assert.is(failing.status, 7, 'exec exits with the command\'s code');

    const unknown = vxtun(['lab', 'exec', '--name', name, 'n9', '--', 'true']);
    assert.is.not(unknown.status, 0);
    assert.match(unknown.stderr, /has no node "n9"/);

    const ls = vxtun(['lab', 'ls']);
    assert.is(ls.status, 0, show(ls));
    assert.ok(ls.stdout.includes(name) && ls.stdout.includes(pod2), show(ls));

    const down = vxtun(['lab', 'down', '--name', name]);
    assert.is(down.status, 0, show(down));
    assert.match(down.stdout, /4 pods detached \(CNI DEL\), 2 agents stopped/);
    assert.equal(await labNamespaces(name), []);
    for (const pid of pids) assert.not.ok(processAlive(pid), `agent ${pid} stopped`);
    assert.not.ok(existsSync(labWorkDir(name)), 'work dir removed');
    assert.not.ok(existsSync(labStatePath(name)), 'state file removed');

    const again = vxtun(['lab', 'down', '--name', name]);
    assert.is(again.status, 0, show(again));
    assert.match(again.stdout, /no lab named/);
  } finally {
    await destroyLab(name);
  }
});

Cli('lab up --backend host-gw: pods reach each other over kernel routes; down removes it', async () => {
  const name = `vxt-clh${process.pid}`;
  try {
    const up = vxtun(['lab', 'up', '--name', name, '--nodes', '2', '--backend', 'host-gw']);
    assert.is(up.status, 0, show(up));
    assert.match(up.stdout, /host-gw \(kernel routes, no tunnel\)/);
    const record = readLabRecord(name)!;
    assert.is(record.backend, 'host-gw');
    const [a, b] = record.nodes;
    const route = await run('ip', ['-n', a!.netns, 'route', 'show', b!.subnet]);
    assert.match(route.stdout, `via ${b!.underlayIp} dev eth0`);
    const ping = vxtun(['lab', 'exec', '--name', name, 'n1-p1', '--', 'ping', '-c', '2', '-W', '2', b!.pod]);
    assert.is(ping.status, 0, show(ping));
    const down = vxtun(['lab', 'down', '--name', name]);
    assert.is(down.status, 0, show(down));
    assert.equal(await labNamespaces(name), []);
  } finally {
    await destroyLab(name);
  }
});

Cli('lab down after agents were killed (a crash) still removes everything', async () => {
  const name = `vxt-clk${process.pid}`;
  try {
    const up = vxtun(['lab', 'up', '--name', name, '--nodes', '2', '--backend', 'ipip']);
    assert.is(up.status, 0, show(up));
    for (const node of readLabRecord(name)!.nodes) process.kill(node.pid!, 'SIGKILL');
    const ls = vxtun(['lab', 'ls']);
    assert.is(ls.status, 0, show(ls));
    const pid = readLabRecord(name)!.nodes[0]!.pid!;
    assert.match(ls.stdout, `vxtun agent EXITED (was pid ${pid})`);
    assert.match(ls.stdout, `\`vxtun lab down --name ${name}\`, then \`vxtun lab up --name ${name}\` with the options it was built with (--nodes 2 --backend ipip)`);
    const down = vxtun(['lab', 'down', '--name', name]);
    assert.is(down.status, 0, show(down));
    assert.equal(await labNamespaces(name), []);
    assert.not.ok(existsSync(labWorkDir(name)));
  } finally {
    await destroyLab(name);
  }
});

Cli('lab up --store etcd: etcd runs on the lab underlay (hub, 192.0.2.2), pods ping, down stops etcd too', async () => {
  const name = `vxt-cle${process.pid}`;
  try {
    const external = vxtun(['lab', 'up', '--name', name, '--store', 'etcd://127.0.0.1:2379']);
    assert.is(external.status, 1, show(external));
    assert.match(external.stderr, /use --store etcd/);
    assert.equal(await labNamespaces(name), [], 'a refused lab builds nothing');

    const up = vxtun(['lab', 'up', '--name', name, '--nodes', '2', '--store', 'etcd']);
    assert.is(up.status, 0, show(up));
    assert.match(up.stdout, /store etcd:\/\/192\.0\.2\.2:2379/);
    const record = readLabRecord(name)!;
    assert.is(record.storeUrl, 'etcd://192.0.2.2:2379');
    // etcd outlived `lab up`, inside the hub namespace (nothing of the lab runs in ours).
    const hubPids = (await run('ip', ['netns', 'pids', `${name}-hub`])).stdout.split(/\s+/).filter(Boolean).map(Number);
    const etcdPids = hubPids.filter((pid) => /etcd/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8')));
    assert.is(etcdPids.length, 1, `one etcd in the hub (pids there: ${hubPids.join(' ')})`);
    const leases = await run('ip', ['netns', 'exec', `${name}-hub`, 'etcdctl', '--endpoints=192.0.2.2:2379', 'get', '--prefix', '--keys-only', '/coreos.com/network/subnets/']);
    assert.is(leases.stdout.split('\n').filter((line) => line.startsWith('/coreos.com')).length, 2, leases.stdout);

    const ping = vxtun(['lab', 'exec', '--name', name, 'n1', '--', 'ping', '-c', '2', '-W', '2', record.nodes[1]!.pod]);
    assert.is(ping.status, 0, show(ping));
    assert.match(ping.stdout, /2 packets transmitted, 2 received/);

    const down = vxtun(['lab', 'down', '--name', name]);
    assert.is(down.status, 0, show(down));
    assert.equal(await labNamespaces(name), []);
    // Killed with the hub namespace; its new parent (pid 1) reaps it a moment later.
    for (const pid of [...etcdPids, ...record.nodes.map((n) => n.pid!)]) assert.ok(await goneSoon(pid), `process ${pid} stopped`);
    assert.not.ok(existsSync(labWorkDir(name)), 'work dir (with etcd data) removed');
  } finally {
    await destroyLab(name);
  }
});

Cli('lab up into a reader that quits after the first line (| head -1) removes the half-built lab, without a stack trace', async () => {
  const name = `vxt-clp${process.pid}`;
  try {
    const child = spawn(process.execPath, [CLI_PATH, 'lab', 'up', '--name', name, '--nodes', '2'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    child.stdout.once('data', () => child.stdout.destroy());
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const code = await new Promise<number | null>((resolve) => child.once('close', (exitCode) => resolve(exitCode)));
    clearTimeout(timer);
    assert.is(code, 130, stderr); // as after Ctrl-C
    assert.not.match(stderr, /\n\s+at /, 'no stack trace');
    assert.match(stderr, `interrupted: removing lab ${name}`);
    assert.equal(await labNamespaces(name), []);
    assert.not.ok(existsSync(labStatePath(name)), 'state file removed');
  } finally {
    await destroyLab(name);
  }
});

Cli('vxtun demo runs to completion, prints the iperf3 figure and leaves nothing behind', async () => {
  try {
    const started = Date.now();
    const demo = vxtun(['demo'], 90_000);
    assert.is(demo.status, 0, show(demo));
    assert.match(demo.stdout, /[\d.]+ Gbit\/s/);
    assert.is((demo.stdout.match(/^\s+ok\s+n\d-p1 -> n\d-p1/gm) ?? []).length, 6, 'six pod pairs ping');
    assert.match(demo.stdout, /the request left n1 with the pod's own address, 10\.17\.\d+\.2: no NAT between pods/);
    if (existsSync('/proc/net/if_inet6')) {
      // A dual-stack demo lab: the IPv6 ping's journey beside the IPv4 one (issue 12).
      assert.match(demo.stdout, /OUT fd00:17:[0-9a-f:]+::2 > fd00:17:[0-9a-f:]+::2 ICMPv6 echo request, 104 B, hlim 63/);
      assert.match(demo.stdout, /the IPv6 request left n1 with the pod's own address, fd00:17:[0-9a-f:]+::2: no NAT between pods/);
    }
    assert.ok(Date.now() - started < 60_000, 'well under a minute');
    assert.equal(await labNamespaces('vxt-demo'), []);
  } finally {
    await destroyLab('vxt-demo');
  }
});

Cli.run();
