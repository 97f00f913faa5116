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
// With nftables the same rules live in a table of our own, `table ip vxtun`, chain `postrouting` (nat hook, priority
// srcnat), replaced in one transaction. The rules are re-checked every 10 s (flannel: --iptables-resync, 5 s) and
// restored when something removed them; they are removed on a clean stop and left in place by a crash (the next start
// replaces them, as flanneld's does). Every firewall command failure is caught and logged
// once with what to do: masquerade is a service to pods, never a reason to stop forwarding.
import { execFile } from 'node:child_process';
import { type Cidr, formatCidr } from '../wire/address';
import type { Logger } from './log';

export type FirewallTool = 'iptables' | 'nftables';
/** 'auto': iptables when the host has it (kube-proxy and the CNI bridge plugin use it too), else nftables. */
export type FirewallChoice = 'auto' | FirewallTool;

export const MASQ_CHAIN = 'FLANNEL-POSTRTG';
export const MASQ_COMMENT = 'flanneld masq';
/** kube-proxy's masquerade mark (KUBE-MARK-MASQ): such packets are NATed by kube-proxy's own rules. */
export const KUBE_PROXY_MARK = '0x4000/0x4000';
export const MULTICAST = '224.0.0.0/4';
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

/** The chain's rules in order, each the argv after `-A FLANNEL-POSTRTG`, as flannel's masqRules builds them. */
export function iptablesMasqRules(n: MasqNetworks, randomFully: boolean): string[][] {
  const network = formatCidr(n.network);
  const subnet = formatCidr(n.subnet);
  const comment = ['-m', 'comment', '--comment', MASQ_COMMENT];
  const masquerade = randomFully ? ['-j', 'MASQUERADE', '--random-fully'] : ['-j', 'MASQUERADE'];
  return [
    ['-m', 'mark', '--mark', KUBE_PROXY_MARK, ...comment, '-j', 'RETURN'],
    ['-s', network, '-d', network, ...comment, '-j', 'RETURN'],
    ['!', '-s', network, '-d', subnet, ...comment, '-j', 'RETURN'],
    ['-s', network, '!', '-d', MULTICAST, ...comment, ...masquerade],
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
export function iptablesRestorePayload(n: MasqNetworks, randomFully: boolean, withJump: boolean): string {
  const lines = ['*nat', `:${MASQ_CHAIN} - [0:0]`];
  for (const rule of iptablesMasqRules(n, randomFully)) lines.push(['-A', MASQ_CHAIN, ...rule].map(restoreWord).join(' '));
  if (withJump) lines.push(['-I', 'POSTROUTING', '1', ...iptablesJumpRule()].map(restoreWord).join(' '));
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** The chain's rules as `nft list chain ip vxtun postrouting` prints them (so a listing compares line for line). */
export function nftMasqRules(n: MasqNetworks, randomFully: boolean): string[] {
  const network = formatCidr(n.network);
  const subnet = formatCidr(n.subnet);
  const comment = `comment "${MASQ_COMMENT}"`;
  const masquerade = randomFully ? 'masquerade fully-random' : 'masquerade';
  return [
    `meta mark & 0x00004000 == 0x00004000 return ${comment}`,
    `ip saddr ${network} ip daddr ${network} return ${comment}`,
    `ip saddr != ${network} ip daddr ${subnet} return ${comment}`,
    `ip saddr ${network} ip daddr != ${MULTICAST} ${masquerade} ${comment}`,
    `ip saddr != ${network} ip daddr ${network} ${masquerade} ${comment}`,
  ];
}

/** An `nft -f -` script replacing our table whole, in one transaction (add + delete makes it work when absent). */
export function nftScript(n: MasqNetworks, randomFully: boolean): string {
  return [
    `add table ip ${NFT_TABLE}`,
    `delete table ip ${NFT_TABLE}`,
    `table ip ${NFT_TABLE} {`,
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
  /** 'FLANNEL-POSTRTG (nat table)' or 'table ip vxtun'. */
  where?: string;
  /** installed: in place; unavailable: no tool, masquerade is off; failing: the last command failed; removed: after stop(). */
  state: 'installed' | 'unavailable' | 'failing' | 'removed';
  /** The last problem, with what to do, while state is not 'installed'. */
  problem?: string;
  /** Times the rules were found missing and put back. */
  restored: number;
}

export interface IpMasqOptions {
  networks: MasqNetworks;
  choice?: FirewallChoice;
  log: Logger;
  run?: CommandRunner;
  /** Check-and-restore period in ms (default 10 s); 0 turns the periodic check off. */
  resyncMs?: number;
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

  private constructor(
    private readonly options: IpMasqOptions,
    private readonly run: CommandRunner,
    readonly firewall: FirewallInfo | undefined,
  ) {}

  /**
   * Finds the tooling, installs the rules and starts the periodic check. Never throws: a missing tool or a failing
   * command is logged (once, with what to do) and reported by status(); forwarding goes on either way.
   */
  static async start(options: IpMasqOptions): Promise<IpMasq> {
    const run = options.run ?? runCommand;
    const choice = options.choice ?? 'auto';
    const found = await detectFirewall(choice, run);
    const log = options.log;
    if (typeof found === 'string') {
      const masq = new IpMasq(options, run, undefined);
      masq.state = 'unavailable';
      masq.problem = `${found}: pods reach other pods but nothing outside ${formatCidr(options.networks.network)} is masqueraded; ${missingToolAdvice(choice)}`;
      log.warn('ip masquerade is off', { reason: masq.problem });
      return masq;
    }
    const masq = new IpMasq(options, run, found);
    await masq.install('install');
    if (masq.state === 'installed') {
      log.info('ip masquerade rules installed', { tool: found.description, rules: masq.where, network: formatCidr(options.networks.network), subnet: formatCidr(options.networks.subnet) });
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
    return this.firewall.tool === 'iptables' ? `${MASQ_CHAIN} (nat table)` : `table ip ${NFT_TABLE}`;
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

  /** One check: when any rule is missing, the whole set is put back in order (as flannel's ensureIPTables). */
  ensure(): Promise<void> {
    this.busy = this.busy.then(async () => {
      if (this.stopped || this.firewall === undefined) return;
      let missing: string | undefined;
      try {
        missing = await this.firstMissing();
      } catch (error) {
        this.fail('checking the ip masquerade rules failed', error as Error);
        return;
      }
      if (missing === undefined) {
        if (this.state !== 'installed') this.options.log.info('ip masquerade rules are in place again');
        this.state = 'installed';
        return;
      }
      if (this.stopped) return;
      const wasFailing = this.state === 'failing';
      await this.install(missing);
      if (this.state !== 'installed') return;
      if (wasFailing) {
        this.options.log.info('ip masquerade rules installed: the firewall commands work again', { tool: this.firewall.description });
      } else {
        this.restored++;
        this.options.log.warn('ip masquerade rules were removed by something else: restored them', { missing, tool: this.firewall.description });
      }
    });
    return this.busy;
  }

  /** Stops the checks and removes our rules (the chain and its jump, or our table). Never throws. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    await this.busy;
    if (this.firewall === undefined) return;
    try {
      if (this.firewall.tool === 'iptables') {
        // The jump may be there more than once (another tool, an old crash): remove every copy.
        for (let i = 0; i < 8 && (await this.iptablesHas('POSTROUTING', iptablesJumpRule())); i++) {
          await this.iptables(['-t', 'nat', '-D', 'POSTROUTING', ...iptablesJumpRule()]);
        }
        if (await this.iptablesChainExists()) {
          await this.iptables(['-t', 'nat', '-F', MASQ_CHAIN]);
          await this.iptables(['-t', 'nat', '-X', MASQ_CHAIN]);
        }
      } else {
        await this.run('nft', ['-f', '-'], `add table ip ${NFT_TABLE}\ndelete table ip ${NFT_TABLE}\n`);
      }
      this.state = 'removed';
      this.options.log.info('ip masquerade rules removed', { tool: this.firewall.description });
    } catch (error) {
      const what = this.firewall.tool === 'iptables'
        ? `remove them with: iptables -t nat -D POSTROUTING -m comment --comment "${MASQ_COMMENT}" -j ${MASQ_CHAIN}; iptables -t nat -F ${MASQ_CHAIN}; iptables -t nat -X ${MASQ_CHAIN}`
        : `remove them with: nft delete table ip ${NFT_TABLE}`;
      this.options.log.warn('could not remove the ip masquerade rules', { error: (error as Error).message, fix: what });
    }
  }

  // ---- private ----

  private async install(reason: string): Promise<void> {
    const fw = this.firewall!;
    const n = this.options.networks;
    try {
      if (fw.tool === 'iptables') {
        const withJump = !(await this.iptablesHas('POSTROUTING', iptablesJumpRule()));
        await this.run('iptables-restore', ['-w', XTABLES_WAIT_SECONDS, '--noflush'], iptablesRestorePayload(n, fw.randomFully, withJump));
      } else {
        await this.run('nft', ['-f', '-'], nftScript(n, fw.randomFully));
      }
      this.state = 'installed';
      this.problem = undefined;
      this.lastError = undefined;
    } catch (error) {
      this.fail(`installing the ip masquerade rules failed (${reason})`, error as Error);
    }
  }

  /** Logs a failure once per distinct message; the next success logs that it is over. */
  private fail(what: string, error: Error): void {
    const fix = this.firewall?.tool === 'nftables'
      ? 'check that nft works here (`nft list ruleset`) and that nothing else owns table ip vxtun'
      : 'check that iptables works here (`iptables -t nat -S`; the nat table needs the kernel\'s netfilter NAT support) and that no other tool holds the xtables lock for long';
    const problem = `${what}: ${error.message}; pods reach other pods without NAT only while the rules are in place; ${fix}`;
    // Once per distinct failure: the same error on every check (whatever step met it) is not news.
    if (error.message !== this.lastError) this.options.log.error('ip masquerade: firewall command failed, forwarding goes on', { problem });
    this.lastError = error.message;
    this.problem = problem;
    this.state = 'failing';
  }

  /** The first missing rule (for the log), or undefined when every rule is present. */
  private async firstMissing(): Promise<string | undefined> {
    const fw = this.firewall!;
    const n = this.options.networks;
    if (fw.tool === 'nftables') {
      let listing: string;
      try {
        listing = (await this.run('nft', ['list', 'chain', 'ip', NFT_TABLE, NFT_CHAIN])).stdout;
      } catch (error) {
        if (/No such file or directory/i.test((error as Error).message)) return `table ip ${NFT_TABLE}`;
        throw error;
      }
      const present = parseNftChainRules(listing);
      const wanted = nftMasqRules(n, fw.randomFully);
      const absent = wanted.find((rule) => !present.includes(rule));
      if (absent !== undefined) return absent;
      return present.length === wanted.length ? undefined : `rules of table ip ${NFT_TABLE} (${present.length} instead of ${wanted.length})`;
    }
    if (!(await this.iptablesChainExists())) return `chain ${MASQ_CHAIN}`;
    if (!(await this.iptablesHas('POSTROUTING', iptablesJumpRule()))) return `POSTROUTING -j ${MASQ_CHAIN}`;
    for (const rule of iptablesMasqRules(n, fw.randomFully)) {
      if (!(await this.iptablesHas(MASQ_CHAIN, rule))) return `${MASQ_CHAIN} ${rule.join(' ')}`;
    }
    return undefined;
  }

  private iptables(args: string[]): Promise<{ stdout: string; stderr: string }> {
    return this.run('iptables', ['-w', XTABLES_WAIT_SECONDS, ...args]);
  }

  /** `iptables -C`: exit 1 means absent ("Bad rule" / "No chain"); anything else (no binary, no lock) is an error. */
  private async iptablesHas(chain: string, rule: string[]): Promise<boolean> {
    try {
      await this.iptables(['-t', 'nat', '-C', chain, ...rule]);
      return true;
    } catch (error) {
      if (/Bad rule|does a matching rule exist|No chain\/target\/match|does not exist/i.test((error as Error).message)) return false;
      throw error;
    }
  }

  /** From `iptables-save -t nat` (`-S`/`-L` of a missing chain answer differently across iptables variants). */
  private async iptablesChainExists(): Promise<boolean> {
    const { stdout } = await this.run('iptables-save', ['-t', 'nat']);
    return stdout.split('\n').some((line) => line.startsWith(`:${MASQ_CHAIN} `));
  }
}
