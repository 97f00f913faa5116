// `vxtun lab up --backend bgp --encap ...` as a user runs it: separate processes, a bird2 per node, pods reachable,
// and `lab down` leaves no namespace, agent or bird behind. Also `vxtun init --backend bgp` writing the config.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CLI_PATH, readLabRecord } from '../../src/lab/overlay';
import { run } from '../../src/lab/shell';
import { destroyLab, listNamespaces } from '../../src/lab/topology';

const Cli = suite('vxtun lab up --backend bgp, vxtun init --backend bgp');

function vxtun(args: string[], timeoutMs = 90_000): { status: number | null; out: string } {
  const result = spawnSync(process.execPath, [CLI_PATH, ...args], { encoding: 'utf8', timeout: timeoutMs });
  return { status: result.status, out: `${result.stdout}\n${result.stderr}` };
}

Cli('init --backend bgp writes the JSON; bgp flags with another backend are refused', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vxtun-init-bgp-'));
  try {
    const store = `file:${join(dir, 'store')}`;
    const ok = vxtun(['init', '--store', store, '--network', '10.60.0.0/16', '--backend', 'bgp', '--as', '65001', '--encap', 'ipip-crosssubnet',
      '--route-reflectors', '192.0.2.2,192.0.2.3', '--graceful-restart', '0', '--bfd']);
    assert.is(ok.status, 0, ok.out);
    assert.match(ok.out, /\{"Network":"10\.60\.0\.0\/16","Backend":\{"Type":"bgp","AS":65001,"Encap":"ipip-crosssubnet","RouteReflectors":\["192\.0\.2\.2","192\.0\.2\.3"\],"GracefulRestart":0,"BFD":true\}\}/);
    const wrong = vxtun(['init', '--store', store, '--network', '10.60.0.0/16', '--backend', 'vxlan', '--encap', 'ipip', '--force']);
    assert.is.not(wrong.status, 0);
    assert.match(wrong.out, /--encap applies to the bgp backend only/);
    const bad = vxtun(['init', '--store', store, '--network', '10.60.0.0/16', '--backend', 'bgp', '--encap', 'vxlan', '--force']);
    assert.is.not(bad.status, 0);
    assert.match(bad.out, /expected one of none, ipip, ipip-crosssubnet, got "vxlan"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Cli('lab up --backend bgp --encap ipip-crosssubnet: pods ping across, status shows the sessions, down removes everything', async () => {
  const name = `vxt-bcli${process.pid}`;
  try {
    const up = vxtun(['lab', 'up', '--name', name, '--nodes', '2', '--backend', 'bgp', '--encap', 'ipip-crosssubnet']);
    assert.is(up.status, 0, up.out);
    assert.match(up.out, /BGP \(a bird2 per node, full mesh\), encap ipip-crosssubnet/);
    const record = readLabRecord(name)!;
    assert.is(record.backend, 'bgp');
    const [n1, n2] = record.nodes;
    const ping = vxtun(['lab', 'exec', '--name', name, 'n1', '--', 'ping', '-c', '2', '-i', '0.2', n2!.pod]);
    assert.is(ping.status, 0, ping.out);
    // The agent reads BIRD's sessions every 2 s: routes can work a poll before status says the session is up.
    let status = vxtun(['status', '--socket', n1!.statusSocket!]);
    for (const deadline = Date.now() + 10_000; !/; ready$/m.test(status.out) && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      status = vxtun(['status', '--socket', n1!.statusSocket!]);
    }
    assert.is(status.status, 0, status.out);
    assert.match(status.out, /^bgp {6}AS 64512, encap ipip-crosssubnet, full mesh, graceful restart 120s, bfd off; bird pid \d+, restarts 0; ready$/m);
    assert.match(status.out, /^ {2}Mesh_192_0_2_12 +up +\S+ \S+ +Established$/m);
    const down = vxtun(['lab', 'down', '--name', name]);
    assert.is(down.status, 0, down.out);
    assert.equal((await listNamespaces()).filter((ns) => ns.startsWith(`${name}-`)), []);
    const birds = (await run('ps', ['-eo', 'pid,args'])).stdout.split('\n').filter((l) => / bird -f /.test(l) && l.includes(`/labs/${name}/`));
    assert.equal(birds, [], 'no bird of the lab left running');
  } finally {
    await destroyLab(name).catch(() => undefined);
  }
});

Cli.run();
