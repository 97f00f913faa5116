// What `lab up` and `lab ls` print about a lab, from its record: no root, no namespaces.
import { spawnSync } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { checkOverlayLabOptions, exitedAgentsNote, formatNodeTable, usageHints } from '../../src/cli/commands/lab';
import type { LabRecord, LabRecordNode } from '../../src/lab/overlay';

function node(i: number, extra: Partial<LabRecordNode> = {}): LabRecordNode {
  return {
    name: `n${i}`, netns: `vxt-t-n${i}`, underlayIp: `192.0.2.${10 + i}`, kind: 'vxtun', subnet: `10.17.${i}.0/24`, tunAddress: `10.17.${i}.0`,
    pod: `10.17.${i}.2`, pods: [{ name: `n${i}-p1`, node: `n${i}`, netns: `vxt-t-n${i}-p1`, address: `10.17.${i}.2` } as never],
    statusSocket: `/run/vxtun/labs/vxt-t/n${i}.sock`, logFile: `/run/vxtun/labs/vxt-t/n${i}.log`, ...extra,
  };
}

function record(extra: Partial<LabRecord> = {}, nodes = [node(1), node(2)]): LabRecord {
  return { name: 'vxt-t', backend: 'vxlan', network: '10.17.0.0/16', vni: 1, port: 4789, storeUrl: 'file:/x', createdAt: '', nodes, ...extra };
}

const Format = suite('lab format');

Format('an agent whose pid is gone, or is not a vxtun agent, shows as exited, with the way back', () => {
  const gone = spawnSync(process.execPath, ['-e', '']).pid; // exited and reaped
  const notAnAgent = process.pid; // alive, but this test runner
  const r = record({}, [node(1, { pid: gone }), node(2, { pid: notAnAgent, pidStartTime: null })]);
  const table = formatNodeTable(r);
  assert.match(table, `vxtun agent EXITED (was pid ${gone})`);
  assert.match(table, `vxtun agent EXITED (was pid ${notAnAgent})`);
  const note = exitedAgentsNote(r) ?? '';
  assert.match(note, 'agents exited: n1 (log /run/vxtun/labs/vxt-t/n1.log), n2');
  assert.match(note, '`vxtun lab down --name vxt-t`, then `vxtun lab up --name vxt-t` with the options it was built with (--nodes 2)');
  assert.is(exitedAgentsNote(record()), undefined); // no pids recorded: nothing to say
});

Format('hints: NAT with --no-ip-masq, kernel routes for host-gw, BGP routes for bgp', () => {
  assert.match(usageHints(record()), "the sender's own pod address arrives: no NAT between pods");
  assert.match(usageHints(record()), 'through the overlay (VXLAN)');
  const nat = usageHints(record({ ipMasq: false }));
  assert.match(nat, "NATed: n1's own address 10.17.1.0 arrives, not n1-p1's");
  assert.not.match(nat, 'no NAT');
  const hostGw = usageHints(record({ backend: 'host-gw', ipMasq: false }));
  assert.match(hostGw, 'routed by the kernel');
  assert.match(hostGw, "n1's own address 192.0.2.11 arrives");
  assert.not.match(hostGw, 'through the overlay');
  const bgp = usageHints(record({ backend: 'bgp', bgpEncap: 'none' }));
  assert.match(bgp, 'BGP routes');
  assert.not.match(bgp, 'through the overlay');
});

Format('IPv6-only: the TUN column shows <subnet6>::, the hints capture ICMPv6 and say pods keep their address (IPv6 masquerade rules)', () => {
  const v6node = (i: number): LabRecordNode => node(i, {
    subnet: '-', tunAddress: '-', pod: `fd00:17:0:${i}::2`, subnet6: `fd00:17:0:${i}::/64`, tunAddress6: `fd00:17:0:${i}::`, underlayIp6: `2001:db8:1::1${i}`,
    pods: [{ name: `n${i}-p1`, node: `n${i}`, netns: `vxt-t-n${i}-p1`, address: `fd00:17:0:${i}::2`, address6: `fd00:17:0:${i}::2` } as never],
  });
  const r = record({ ipv6: { network: 'fd00:17::/56', only: true, underlay: false } }, [v6node(1), v6node(2)]);
  assert.match(formatNodeTable(r), /fd00:17:0:1:: \(vxtun0\)/);
  assert.not.match(formatNodeTable(r), /- \(vxtun0\)/);
  const hints = usageHints(r);
  assert.match(hints, 'tcpdump -ni eth0 icmp6');
  assert.match(hints, 'no NAT between pods');
});

Format('lab options are refused before anything is made, with the real reason', () => {
  assert.throws(() => checkOverlayLabOptions({ name: 'bad', nodes: 2, backend: 'vxlan' }), /invalid lab name "bad"/);
  for (const backend of ['host-gw', 'bgp'] as const) {
    assert.throws(() => checkOverlayLabOptions({ name: 'vxt-t', nodes: 2, backend, kernelPeer: true }), (e: Error) =>
      /--kernel-peer needs --backend vxlan/.test(e.message) && !/ipip module/.test(e.message));
  }
  assert.throws(() => checkOverlayLabOptions({ name: 'vxt-t', nodes: 1, backend: 'vxlan', kernelPeer: true }), /at least 2 nodes/);
  checkOverlayLabOptions({ name: 'vxt-t', nodes: 2, backend: 'vxlan', kernelPeer: true });
  assert.throws(() => checkOverlayLabOptions({ name: 'vxt-t', nodes: 2, backend: 'vxlan', kernelPeer: true, ipv6: { only: false, underlay: false } }), /--kernel-peer with --ipv6 needs --ipv6-underlay/);
  checkOverlayLabOptions({ name: 'vxt-t', nodes: 2, backend: 'vxlan', kernelPeer: true, ipv6: { only: false, underlay: true } });
});

Format.run();
