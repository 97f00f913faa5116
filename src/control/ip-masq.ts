// IP masquerade as flanneld does it with --ip-masq (kube-flannel's manifest turns it on): pods keep their own source
// address towards every other pod of the cluster network, and only traffic leaving the cluster network is source-NATed
// to the node. flannel pkg/trafficmngr/iptables (masqRules) and pkg/trafficmngr/nftables (addMasqRules); FACTS.md,
// "Pods and the CNI contract". In the nat table, after the rules of whoever came first:
//
//   POSTROUTING      -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG      (inserted first)
//   FLANNEL-POSTRTG  -m mark --mark 0x4000/0x4000            RETURN      kube-proxy masquerades these itself
//                    -s <Network> -d <Network>               RETURN      pod to pod: no NAT inside the overlay
//                    ! -s <Network> -d <our subnet>          RETURN      outside -> our pods arrives unchanged
//                    -s <Network> ! -d 224.0.0.0/4           MASQUERADE  pods -> outside (--random-fully if supported)
//                    ! -s <Network> -d <Network>             MASQUERADE  the host -> pods on other nodes
//
// With IPv6 on (a dual-stack or IPv6-only network) flanneld installs the same chain with ip6tables, built from the IPv6
// network and lease, multicast being ff00::/8 (flannel pkg/trafficmngr/iptables MasqIP6Rules; nftables addMasqRules
// with family ip6). We do the same: ip6tables' nat table gets its own FLANNEL-POSTRTG and jump.
//
// With nftables the same rules live in a table of our own, `table ip vxtun`, chain `postrouting` (nat hook, priority
// srcnat), replaced in one transaction; the IPv6 rules in `table ip6 vxtun`, shaped the same. Two per-family tables
// rather than one inet table, as flannel does (flannel-ipv4 / flannel-ipv6): each family is replaced, checked and
// removed on its own (an IPv6-only node has no ip table at all), the IPv4 table is unchanged from before dual stack
// (an upgraded agent replaces it in place), and `nft list chain ip6 vxtun postrouting` reads like the IPv4 one. The rules are re-checked every 10 s (flannel: --iptables-resync, 5 s) and
// restored when something removed them; they are removed on a clean stop and left in place by a crash (the next start
// replaces them, as flanneld's does). Every firewall command failure is caught and logged
// once with what to do: masquerade is a service to pods, never a reason to stop forwarding.
import { execFile } from 'node:child_process';
import { type Cidr, formatCidr } from '../wire/address';
import { type Cidr6, formatCidr6 } from '../wire/address6';
import type { Logger } from './log';

export type FirewallTool = 'iptables' | 'nftables';
/** 'auto': iptables when the host has it (kube-proxy and the CNI bridge plugin use it too), else nftables. */
export type FirewallChoice = 'auto' | FirewallTool;

export const MASQ_CHAIN = 'FLANNEL-POSTRTG';
export const MASQ_COMMENT = 'flanneld masq';
/** kube-proxy's masquerade mark (KUBE-MARK-MASQ): such packets are NATed by kube-proxy's own rules. */
export const KUBE_PROXY_MARK = '0x4000/0x4000';
export const MULTICAST = '224.0.0.0/4';
/** IPv6 multicast (RFC 4291 section 2.7), the IPv6 rules' "not multicast" (flannel: ff00::/8). */
export const MULTICAST6 = 'ff00::/8';
export const NFT_TABLE = 'vxtun';
export const NFT_CHAIN = 'postrouting';
/** How often the rules are checked and restored (flannel: --iptables-resync, 5 s default). */
export const DEFAULT_RESYNC_MS = 10_000;
/** Seconds iptables waits for the xtables lock held by kube-proxy or the CNI plugins (`-w`). */
const XTABLES_WAIT_SECONDS = '5';
const COMMAND_TIMEOUT_MS = 10_000;

/** The two address ranges the rules are made of. */
export interface MasqNetworks {
  /** The cluster network (FLANNEL_NETWORK), e.g. 10.17.0.0/16. */
  network: Cidr;
  /** This node's lease (FLANNEL_SUBNET's network), e.g. 10.17.3.0/24. */
  subnet: Cidr;
}

/** The IPv6 pair: the cluster's IPv6 network (FLANNEL_IPV6_NETWORK) and this node's IPv6 lease. */
export interface MasqNetworks6 {
  /** e.g. fd00:17::/56. */
  network: Cidr6;
  /** e.g. fd00:17:0:3::/64. */
  subnet: Cidr6;
}

/** Either family's pair; the rule builders tell them apart by the address type (bigint: IPv6). */
export type AnyMasqNetworks = MasqNetworks | MasqNetworks6;

function isV6(n: AnyMasqNetworks): n is MasqNetworks6 {
  return typeof n.network.address === 'bigint';
}

/** The rule text of one family: ranges as text, the multicast range, the nft address keyword and table family. */
function ranges(n: AnyMasqNetworks): { network: string; subnet: string; multicast: string; nft: 'ip' | 'ip6' } {
  if (isV6(n)) return { network: formatCidr6(n.network), subnet: formatCidr6(n.subnet), multicast: MULTICAST6, nft: 'ip6' };
  return { network: formatCidr(n.network), subnet: formatCidr(n.subnet), multicast: MULTICAST, nft: 'ip' };
}

/** The iptables binaries of one family: iptables / ip6tables and their -save / -restore. */
export function iptablesBinary(n: AnyMasqNetworks): 'iptables' | 'ip6tables' {
  return isV6(n) ? 'ip6tables' : 'iptables';
}

/** Runs a program (no shell); rejects with an Error whose message holds the command line and its stderr. */
export type CommandRunner = (file: string, args: readonly string[], input?: string) => Promise<{ stdout: string; stderr: string }>;

export const runCommand: CommandRunner = (file, args, input) =>
  new Promise((resolve, reject) => {
    const child = execFile(file, [...args], { timeout: COMMAND_TIMEOUT_MS, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (!error) return resolve({ stdout, stderr });
      const err = error as NodeJS.ErrnoException;
      const why = err.code === 'ENOENT' ? 'not found' : stderr.trim() || err.message;
      reject(Object.assign(new Error(`${[file, ...args].join(' ')}: ${why}`), { code: err.code, stderr }));
    });
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input);
  });

// ---- the rules ---------------------------------------------------------------------------------------------------

/** The POSTROUTING rule that sends every packet through our chain (iptables argv after `-t nat -I POSTROUTING`). */
export function iptablesJumpRule(): string[] {
  return ['-m', 'comment', '--comment', MASQ_COMMENT, '-j', MASQ_CHAIN];
}

/**
 * The chain's rules in order, each the argv after `-A FLANNEL-POSTRTG`, as flannel's masqRules builds them; for an
 * IPv6 pair the same rules for ip6tables with ff00::/8 as the multicast range (flannel's MasqIP6Rules).
 */
export function iptablesMasqRules(n: AnyMasqNetworks, randomFully: boolean): string[][] {
  const { network, subnet, multicast } = ranges(n);
  const comment = ['-m', 'comment', '--comment', MASQ_COMMENT];
  const masquerade = randomFully ? ['-j', 'MASQUERADE', '--random-fully'] : ['-j', 'MASQUERADE'];
  return [
    ['-m', 'mark', '--mark', KUBE_PROXY_MARK, ...comment, '-j', 'RETURN'],
    ['-s', network, '-d', network, ...comment, '-j', 'RETURN'],
    ['!', '-s', network, '-d', subnet, ...comment, '-j', 'RETURN'],
    ['-s', network, '!', '-d', multicast, ...comment, ...masquerade],
    ['!', '-s', network, '-d', network, ...comment, ...masquerade],
  ];
}

/** Quotes one argv word for iptables-restore's input (only the comment has a space). */
function restoreWord(word: string): string {
  return /^[\w./:!-]+$/.test(word) ? word : `"${word}"`;
}

/**
 * The iptables-restore --noflush payload: declaring the chain flushes it (or creates it), so the whole chain is
 * replaced in one transaction; the POSTROUTING jump is inserted first when `withJump` (it is missing).
 */
export function iptablesRestorePayload(n: AnyMasqNetworks, randomFully: boolean, withJump: boolean): string {
  const lines = ['*nat', `:${MASQ_CHAIN} - [0:0]`];
  for (const rule of iptablesMasqRules(n, randomFully)) lines.push(['-A', MASQ_CHAIN, ...rule].map(restoreWord).join(' '));
  if (withJump) lines.push(['-I', 'POSTROUTING', '1', ...iptablesJumpRule()].map(restoreWord).join(' '));
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/**
 * The chain's rules as `nft list chain ip vxtun postrouting` (IPv6: `ip6 vxtun`) prints them, so a listing compares
 * line for line.
 */
export function nftMasqRules(n: AnyMasqNetworks, randomFully: boolean): string[] {
  const { network, subnet, multicast, nft: ip } = ranges(n);
  const comment = `comment "${MASQ_COMMENT}"`;
  const masquerade = randomFully ? 'masquerade fully-random' : 'masquerade';
  return [
    `meta mark & 0x00004000 == 0x00004000 return ${comment}`,
    `${ip} saddr ${network} ${ip} daddr ${network} return ${comment}`,
    `${ip} saddr != ${network} ${ip} daddr ${subnet} return ${comment}`,
    `${ip} saddr ${network} ${ip} daddr != ${multicast} ${masquerade} ${comment}`,
    `${ip} saddr != ${network} ${ip} daddr ${network} ${masquerade} ${comment}`,
  ];
}

/** `table ip vxtun` or `table ip6 vxtun`: where one family's rules live with nftables. */
export function nftTable(n: AnyMasqNetworks): string {
  return `table ${ranges(n).nft} ${NFT_TABLE}`;
}

/**
 * An `nft -f -` script replacing our table of the pair's family whole, in one transaction (add + delete makes it
 * work when absent).
 */
export function nftScript(n: AnyMasqNetworks, randomFully: boolean): string {
  const table = nftTable(n);
  return [
    `add ${table}`,
    `delete ${table}`,
    `${table} {`,
    `\tchain ${NFT_CHAIN} {`,
    '\t\ttype nat hook postrouting priority srcnat; policy accept;',
    ...nftMasqRules(n, randomFully).map((rule) => `\t\t${rule}`),
    '\t}',
    '}',
    '',
  ].join('\n');
}

/** The rule lines of an `nft list chain` output (no table/chain/hook lines, no braces). */
export function parseNftChainRules(listing: string): string[] {
  return listing
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && line !== '}' && !/^(table|chain) /.test(line) && !line.startsWith('type '));
}

// ---- the host's tooling -------------------------------------------------------------------------------------------

export interface FirewallInfo {
  tool: FirewallTool;
  /** For people: 'iptables v1.8.9 (nf_tables)', 'iptables v1.8.9 (legacy)', 'nftables v1.0.6'. */
  description: string;
  /** MASQUERADE --random-fully / masquerade fully-random: iptables >= 1.6.2 (flannel's HasRandomFully), nft always. */
  randomFully: boolean;
}

/** `iptables --version` ("iptables v1.8.9 (nf_tables)"): version and variant; undefined when unrecognised. */
export function parseIptablesVersion(text: string): { version: [number, number, number]; variant: string } | undefined {
  const match = /v(\d+)\.(\d+)\.(\d+)(?:\s+\(([\w-]+)\))?/.exec(text);
  if (match === null) return undefined;
  return { version: [Number(match[1]), Number(match[2]), Number(match[3])], variant: match[4] ?? 'legacy' };
}

function atLeast(version: readonly number[], wanted: readonly number[]): boolean {
  for (let i = 0; i < wanted.length; i++) {
    if ((version[i] ?? 0) !== wanted[i]) return (version[i] ?? 0) > wanted[i]!;
  }
  return true;
}

/** What to install when the tooling is missing (Debian package names). */
export function missingToolAdvice(choice: FirewallChoice): string {
  const pkg = choice === 'nftables' ? 'nftables' : choice === 'iptables' ? 'iptables' : 'iptables (or nftables)';
  return `install it (apt-get install ${pkg}) and restart the agent, or run with --no-ip-masq and masquerade some other way`;
}

/** Finds the firewall tool to use; a string says what is missing and what to do. */
export async function detectFirewall(choice: FirewallChoice, run: CommandRunner = runCommand): Promise<FirewallInfo | string> {
  if (choice !== 'nftables') {
    try {
      const { stdout, stderr } = await run('iptables', ['--version']);
      const parsed = parseIptablesVersion(stdout || stderr);
      return {
        tool: 'iptables',
        description: (stdout || stderr).trim(),
        randomFully: parsed !== undefined && atLeast(parsed.version, [1, 6, 2]),
      };
    } catch (error) {
      if (choice === 'iptables') return `iptables is not usable (${(error as Error).message})`;
    }
  }
  try {
    const { stdout } = await run('nft', ['--version']);
    return { tool: 'nftables', description: stdout.trim().replace(/\s*\(.*\)$/, ''), randomFully: true };
  } catch (error) {
    return choice === 'nftables' ? `nft is not usable (${(error as Error).message})` : 'neither iptables nor nft is installed';
  }
}

// ---- keeping the rules -------------------------------------------------------------------------------------------

export interface IpMasqStatus {
  /** 'iptables v1.8.9 (nf_tables)' and the like; absent when no tool was found. */
  tool?: string;
  /**
   * 'FLANNEL-POSTRTG (nat table)' or 'table ip vxtun'; with IPv6 also '… (nat table, iptables and ip6tables)' or
   * 'table ip vxtun, table ip6 vxtun' (IPv6-only: 'FLANNEL-POSTRTG (ip6tables nat table)' or 'table ip6 vxtun').
   */
  where?: string;
  /**
   * installed: in place (every family); unavailable: no tool, masquerade is off; failing: the last command failed
   * (for either family); removed: after stop().
   */
  state: 'installed' | 'unavailable' | 'failing' | 'removed';
  /** The last problem, with what to do, while state is not 'installed'. */
  problem?: string;
  /** Times the rules (of either family) were found missing and put back. */
  restored: number;
}

export interface IpMasqOptions {
  /** The IPv4 pair; absent in an IPv6-only network. At least one of networks / networks6 must be given. */
  networks?: MasqNetworks;
  /** The IPv6 pair when the network has IPv6 (flannel: EnableIPv6): rules for ip6tables or `table ip6 vxtun`. */
  networks6?: MasqNetworks6;
  choice?: FirewallChoice;
  log: Logger;
  run?: CommandRunner;
  /** Check-and-restore period in ms (default 10 s); 0 turns the periodic check off. */
  resyncMs?: number;
}

/** The networks of the options, IPv4 first (the order rules are installed, checked and removed in). */
function families(options: IpMasqOptions): AnyMasqNetworks[] {
  const list: AnyMasqNetworks[] = [];
  if (options.networks !== undefined) list.push(options.networks);
  if (options.networks6 !== undefined) list.push(options.networks6);
  if (list.length === 0) throw new Error('ip masquerade needs an IPv4 or an IPv6 network (networks / networks6)');
  return list;
}

export class IpMasq {
  private timer: NodeJS.Timeout | undefined;
  private state: IpMasqStatus['state'] = 'failing';
  private problem: string | undefined;
  private lastError: string | undefined;
  private restored = 0;
  /** One check at a time: a slow iptables (lock held) must not pile up checks. */
  private busy: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly families: AnyMasqNetworks[];

  private constructor(
    private readonly options: IpMasqOptions,
    private readonly run: CommandRunner,
    readonly firewall: FirewallInfo | undefined,
  ) {
    this.families = families(options);
  }

  /**
   * Finds the tooling, installs the rules (each family's) and starts the periodic check. Never throws on the host's
   * account: a missing tool or a failing command is logged (once, with what to do) and reported by status();
   * forwarding goes on either way. Throws only when neither `networks` nor `networks6` is given (a caller's bug).
   */
  static async start(options: IpMasqOptions): Promise<IpMasq> {
    families(options);
    const run = options.run ?? runCommand;
    const choice = options.choice ?? 'auto';
    const found = await detectFirewall(choice, run);
    const log = options.log;
    const networkText = [
      ...(options.networks ? [formatCidr(options.networks.network)] : []),
      ...(options.networks6 ? [formatCidr6(options.networks6.network)] : []),
    ].join(' and ');
    if (typeof found === 'string') {
      const masq = new IpMasq(options, run, undefined);
      masq.state = 'unavailable';
      masq.problem = `${found}: pods reach other pods but nothing outside ${networkText} is masqueraded; ${missingToolAdvice(choice)}`;
      log.warn('ip masquerade is off', { reason: masq.problem });
      return masq;
    }
    const masq = new IpMasq(options, run, found);
    await masq.installAll('install');
    if (masq.state === 'installed') {
      log.info('ip masquerade rules installed', {
        tool: found.description,
        rules: masq.where,
        ...(options.networks ? { network: formatCidr(options.networks.network), subnet: formatCidr(options.networks.subnet) } : {}),
        ...(options.networks6 ? { network6: formatCidr6(options.networks6.network), subnet6: formatCidr6(options.networks6.subnet) } : {}),
      });
    }
    const period = options.resyncMs ?? DEFAULT_RESYNC_MS;
    if (period > 0) {
      masq.timer = setInterval(() => void masq.ensure(), period);
      masq.timer.unref();
    }
    return masq;
  }

  get where(): string | undefined {
    if (this.firewall === undefined) return undefined;
    const has4 = this.options.networks !== undefined;
    const has6 = this.options.networks6 !== undefined;
    if (this.firewall.tool === 'nftables') return this.families.map(nftTable).join(', ');
    if (has4 && has6) return `${MASQ_CHAIN} (nat table, iptables and ip6tables)`;
    return has6 ? `${MASQ_CHAIN} (ip6tables nat table)` : `${MASQ_CHAIN} (nat table)`;
  }

  status(): IpMasqStatus {
    return {
      tool: this.firewall?.description,
      where: this.where,
      state: this.state,
      ...(this.problem !== undefined && this.state !== 'installed' ? { problem: this.problem } : {}),
      restored: this.restored,
    };
  }

  /**
   * One check of every family: when any rule of a family is missing, that family's whole set is put back in order
   * (as flannel's ensureIPTables does per protocol).
   */
  ensure(): Promise<void> {
    this.busy = this.busy.then(async () => {
      if (this.stopped || this.firewall === undefined) return;
      const wasFailing = this.state === 'failing';
      let allInPlace = true;
      let failed = false;
      for (const n of this.families) {
        let missing: string | undefined;
        try {
          missing = await this.firstMissing(n);
        } catch (error) {
          this.fail('checking the ip masquerade rules failed', error as Error);
          failed = true;
          continue;
        }
        if (missing === undefined) continue;
        allInPlace = false;
        if (this.stopped) return;
        if (!(await this.install(n, missing))) {
          failed = true;
          continue;
        }
        if (!wasFailing) {
          this.restored++;
          this.options.log.warn('ip masquerade rules were removed by something else: restored them', { missing, tool: this.firewall.description });
        }
      }
      if (failed) {
        this.state = 'failing';
        return;
      }
      if (wasFailing) {
        this.options.log.info(allInPlace ? 'ip masquerade rules are in place again' : 'ip masquerade rules installed: the firewall commands work again', { tool: this.firewall.description });
      }
      this.succeed();
    });
    return this.busy;
  }

  /** Stops the checks and removes our rules (each family's chain and its jump, or our tables). Never throws. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    await this.busy;
    if (this.firewall === undefined) return;
    let removedAll = true;
    for (const n of this.families) {
      const bin = iptablesBinary(n);
      try {
        if (this.firewall.tool === 'iptables') {
          // The jump may be there more than once (another tool, an old crash): remove every copy.
          for (let i = 0; i < 8 && (await this.iptablesHas(bin, 'POSTROUTING', iptablesJumpRule())); i++) {
            await this.iptables(bin, ['-t', 'nat', '-D', 'POSTROUTING', ...iptablesJumpRule()]);
          }
          if (await this.iptablesChainExists(bin)) {
            await this.iptables(bin, ['-t', 'nat', '-F', MASQ_CHAIN]);
            await this.iptables(bin, ['-t', 'nat', '-X', MASQ_CHAIN]);
          }
        } else {
          await this.run('nft', ['-f', '-'], `add ${nftTable(n)}\ndelete ${nftTable(n)}\n`);
        }
      } catch (error) {
        removedAll = false;
        const what = this.firewall.tool === 'iptables'
          ? `remove them with: ${bin} -t nat -D POSTROUTING -m comment --comment "${MASQ_COMMENT}" -j ${MASQ_CHAIN}; ${bin} -t nat -F ${MASQ_CHAIN}; ${bin} -t nat -X ${MASQ_CHAIN}`
          : `remove them with: nft delete ${nftTable(n)}`;
        this.options.log.warn('could not remove the ip masquerade rules', { error: (error as Error).message, fix: what });
      }
    }
    if (removedAll) {
      this.state = 'removed';
      this.options.log.info('ip masquerade rules removed', { tool: this.firewall.description, rules: this.where });
    }
  }

  // ---- private ----

  /** Installs every family; installed when all of them are. */
  private async installAll(reason: string): Promise<void> {
    let ok = true;
    for (const n of this.families) ok = (await this.install(n, reason)) && ok;
    if (ok) this.succeed();
  }

  /** Replaces one family's rules; false (the failure logged and kept in status) when a command failed. */
  private async install(n: AnyMasqNetworks, reason: string): Promise<boolean> {
    const fw = this.firewall!;
    const bin = iptablesBinary(n);
    try {
      if (fw.tool === 'iptables') {
        const withJump = !(await this.iptablesHas(bin, 'POSTROUTING', iptablesJumpRule()));
        await this.run(`${bin}-restore`, ['-w', XTABLES_WAIT_SECONDS, '--noflush'], iptablesRestorePayload(n, fw.randomFully, withJump));
      } else {
        await this.run('nft', ['-f', '-'], nftScript(n, fw.randomFully));
      }
      return true;
    } catch (error) {
      this.fail(`installing the ${isV6(n) ? 'IPv6 ' : ''}ip masquerade rules failed (${reason})`, error as Error);
      return false;
    }
  }

  private succeed(): void {
    this.state = 'installed';
    this.problem = undefined;
    this.lastError = undefined;
  }

  /** Logs a failure once per distinct message; the next success logs that it is over. */
  private fail(what: string, error: Error): void {
    const fix = this.firewall?.tool === 'nftables'
      ? 'check that nft works here (`nft list ruleset`) and that nothing else owns table ip vxtun / table ip6 vxtun'
      : 'check that iptables (and ip6tables, with IPv6) works here (`iptables -t nat -S`, `ip6tables -t nat -S`; the nat table needs the kernel\'s netfilter NAT support) and that no other tool holds the xtables lock for long';
    const problem = `${what}: ${error.message}; pods reach other pods without NAT only while the rules are in place; ${fix}`;
    // Once per distinct failure: the same error on every check (whatever step met it) is not news.
    if (error.message !== this.lastError) this.options.log.error('ip masquerade: firewall command failed, forwarding goes on', { problem });
    this.lastError = error.message;
    this.problem = problem;
    this.state = 'failing';
  }

  /** The first missing rule of one family (for the log), or undefined when every rule is present. */
  private async firstMissing(n: AnyMasqNetworks): Promise<string | undefined> {
    const fw = this.firewall!;
    if (fw.tool === 'nftables') {
      const { nft: family } = ranges(n);
      let listing: string;
      try {
        listing = (await this.run('nft', ['list', 'chain', family, NFT_TABLE, NFT_CHAIN])).stdout;
      } catch (error) {
        if (/No such file or directory/i.test((error as Error).message)) return nftTable(n);
        throw error;
      }
      const present = parseNftChainRules(listing);
      const wanted = nftMasqRules(n, fw.randomFully);
      const absent = wanted.find((rule) => !present.includes(rule));
      if (absent !== undefined) return absent;
      return present.length === wanted.length ? undefined : `rules of ${nftTable(n)} (${present.length} instead of ${wanted.length})`;
    }
    const bin = iptablesBinary(n);
    if (!(await this.iptablesChainExists(bin))) return `${bin} chain ${MASQ_CHAIN}`;
    if (!(await this.iptablesHas(bin, 'POSTROUTING', iptablesJumpRule()))) return `${bin} POSTROUTING -j ${MASQ_CHAIN}`;
    for (const rule of iptablesMasqRules(n, fw.randomFully)) {
      if (!(await this.iptablesHas(bin, MASQ_CHAIN, rule))) return `${bin} ${MASQ_CHAIN} ${rule.join(' ')}`;
    }
    return undefined;
  }

  private iptables(bin: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
    return this.run(bin, ['-w', XTABLES_WAIT_SECONDS, ...args]);
  }

  /** `iptables -C`: exit 1 means absent ("Bad rule" / "No chain"); anything else (no binary, no lock) is an error. */
  private async iptablesHas(bin: string, chain: string, rule: string[]): Promise<boolean> {
    try {
      await this.iptables(bin, ['-t', 'nat', '-C', chain, ...rule]);
      return true;
    } catch (error) {
      if (/Bad rule|does a matching rule exist|No chain\/target\/match|does not exist/i.test((error as Error).message)) return false;
      throw error;
    }
  }

  /** From `iptables-save -t nat` (`-S`/`-L` of a missing chain answer differently across iptables variants). */
  private async iptablesChainExists(bin: string): Promise<boolean> {
    const { stdout } = await this.run(`${bin}-save`, ['-t', 'nat']);
    return stdout.split('\n').some((line) => line.startsWith(`:${MASQ_CHAIN} `));
  }
}
