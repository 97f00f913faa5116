// A routed underlay with a narrow hop in the middle, made from a three-node lab: the hub stops being a bridge and
// becomes router A, node 3 becomes router B, and the link between the routers has a smaller MTU while both end nodes
// keep 1500-byte links (so neither end knows of the narrow hop: their TCP MSS does not avoid it). With `dropIcmp`
// router A discards every ICMP packet it forwards or sends, its own "fragmentation needed" included: the
// filtered-ICMP path on which outer DF decides whether a tunnel works (RFC 1191 black holes; FACTS.md "MTU mismatch
// and missing ICMP").
//
//   n1 eth0 192.0.2.11/24 ── 192.0.2.1 [hub = router A, nft drops ICMP] 198.51.100.1/30 ── MTU narrow ──
//      ── 198.51.100.2/30 [n3 = router B] 198.51.100.129/25 ── n2 eth0 198.51.100.140/25
//
// Everything lives in the lab's namespaces (veths and the nft table included), so destroying the lab removes it.
import { formatIPv4, parseCidr } from '../wire/address';
import { run } from './shell';
import type { Lab, LabNode } from './topology';

/** The transit link between the routers, and the far node's subnet behind router B. */
export const TRANSIT_LINK = '198.51.100.0/30';
export const FAR_UNDERLAY = '198.51.100.128/25';
const FAR_NODE_HOST = 12;
const NFT_TABLE = 'vxt_icmp_filter';

export interface RoutedUnderlayOptions {
  /** MTU of the link between the router and the second node, both ends (default 1400). */
  narrowMtu?: number;
  /** Drop every ICMP packet the router forwards or sends (default true). */
  dropIcmp?: boolean;
}

export interface RoutedUnderlay {
  /** The lab's node 1, on the first subnet (its own underlay address). */
  near: LabNode;
  /** The lab's node 2 with its new address behind router B: pass this one to Overlay.startAgent and friends. */
  far: LabNode;
  narrowMtu: number;
  /** ICMP packets router A dropped so far, and of them "fragmentation needed" (type 3 code 4). */
  icmpDropped(): Promise<{ all: number; fragNeeded: number }>;
}

/** Turns a three-node lab (made by createLab, not yet used) into the routed underlay above; node 3 is router B. */
export async function routeThroughHub(lab: Lab, options: RoutedUnderlayOptions = {}): Promise<RoutedUnderlay> {
  if (lab.nodes.length !== 3) throw new Error(`a routed underlay needs a three-node lab (two ends and router B); ${lab.name} has ${lab.nodes.length}`);
  const narrowMtu = options.narrowMtu ?? 1400;
  if (!Number.isInteger(narrowMtu) || narrowMtu < 576 || narrowMtu > lab.mtu) throw new Error(`narrow MTU ${narrowMtu}: must be 576 to ${lab.mtu}`);
  const hub = lab.hubNetns;
  const near = lab.node(1);
  const routerB = lab.node(3);
  const transit = parseCidr(TRANSIT_LINK);
  const farNet = parseCidr(FAR_UNDERLAY);
  const far: LabNode = { ...lab.node(2), underlayIp: formatIPv4(farNet.address + FAR_NODE_HOST) };
  const nearNet = `${lab.underlay}/${lab.prefixLength}`;
  const routerANear = formatIPv4(parseCidr(nearNet).address + 1);
  const routerATransit = formatIPv4(transit.address + 1);
  const routerBTransit = formatIPv4(transit.address + 2);
  const routerBFar = formatIPv4(farNet.address + 1);
  const ip = (netns: string, ...args: string[]) => run('ip', args, { netns });
  const dev = near.underlayDev;

  // Router A: the hub's ports (named after the nodes, topology.ts) unplugged from the bridge and addressed.
  await ip(hub, 'link', 'set', near.name, 'nomaster');
  await ip(hub, 'link', 'set', routerB.name, 'nomaster');
  await ip(hub, 'addr', 'add', `${routerANear}/${lab.prefixLength}`, 'dev', near.name);
  await ip(hub, 'addr', 'add', `${routerATransit}/${transit.prefixLength}`, 'dev', routerB.name);
  await ip(hub, 'link', 'set', routerB.name, 'mtu', String(narrowMtu));
  await ip(hub, 'route', 'add', FAR_UNDERLAY, 'via', routerBTransit);
  // Router B: its eth0 is the other end of the narrow link; a new veth toward node 2 replaces node 2's hub port.
  await ip(routerB.netns, 'addr', 'flush', 'dev', dev);
  await ip(routerB.netns, 'link', 'set', dev, 'mtu', String(narrowMtu));
  await ip(routerB.netns, 'addr', 'add', `${routerBTransit}/${transit.prefixLength}`, 'dev', dev);
  await ip(hub, 'link', 'del', far.name); // node 2's old eth0 goes with it
  await ip(routerB.netns, 'link', 'add', far.name, 'mtu', String(lab.mtu), 'type', 'veth', 'peer', 'name', dev, 'mtu', String(lab.mtu), 'netns', far.netns);
  await ip(routerB.netns, 'addr', 'add', `${routerBFar}/${farNet.prefixLength}`, 'dev', far.name);
  await ip(routerB.netns, 'link', 'set', far.name, 'up');
  await ip(routerB.netns, 'route', 'add', nearNet, 'via', routerATransit);
  for (const router of [hub, routerB.netns]) await run('sysctl', ['-qw', 'net.ipv4.ip_forward=1'], { netns: router });
  // The end nodes: node 2 readdressed behind router B; each reaches the other's subnet through its router.
  await ip(far.netns, 'addr', 'add', `${far.underlayIp}/${farNet.prefixLength}`, 'dev', dev);
  await ip(far.netns, 'link', 'set', dev, 'up');
  await ip(far.netns, 'route', 'add', nearNet, 'via', routerBFar);
  await ip(near.netns, 'route', 'add', FAR_UNDERLAY, 'via', routerANear);
  if (options.dropIcmp ?? true) {
    // Counted rules: the first one counts what a DF packet too big for the narrow hop makes the router say.
    const chain = (hook: string) => [
      `  chain ${hook} {`,
      `    type filter hook ${hook} priority 0; policy accept;`,
      '    icmp type destination-unreachable icmp code frag-needed counter drop',
      '    ip protocol icmp counter drop',
      '  }',
    ];
    const ruleset = [`table ip ${NFT_TABLE} {`, ...chain('forward'), ...chain('output'), '}', ''].join('\n');
    await run('nft', ['-f', '-'], { netns: hub, input: ruleset });
  }

  return {
    near,
    far,
    narrowMtu,
    icmpDropped: async () => {
      if (!(options.dropIcmp ?? true)) return { all: 0, fragNeeded: 0 };
      const { stdout } = await run('nft', ['list', 'table', 'ip', NFT_TABLE], { netns: hub });
      let all = 0;
      let fragNeeded = 0;
      for (const line of stdout.split('\n')) {
        const match = /counter packets (\d+)/.exec(line);
        if (match === null) continue;
        all += Number(match[1]);
        if (line.includes('frag-needed')) fragNeeded += Number(match[1]);
      }
      return { all, fragNeeded };
    },
  };
}
