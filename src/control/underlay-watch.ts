// Whether this node's underlay addresses (--public-ip, and --public-ipv6 when given) are still on its interfaces.
// When one goes (`ip addr del`, DHCP, a NIC replaced) the agent cannot send or receive encapsulated traffic of that
// family, yet nothing else would say so: a cheap periodic look at the host's addresses does, once when one goes and
// once when it returns.
import { hostHasAddress } from '../io/interfaces';
import type { Logger } from './log';

export const DEFAULT_UNDERLAY_CHECK_MS = 5000;

export interface UnderlayState {
  addressPresent: boolean;
  /** Set while an address is missing: what is wrong and what to do. */
  problem?: string;
}

export class UnderlayWatch {
  /** Per address (dotted quad or IPv6 text): on an interface at the last look. */
  private readonly present = new Map<string, boolean>();
  private readonly timer: NodeJS.Timeout;

  /**
   * Checks every `intervalMs` (default 5 s) that each of `addresses` is on an interface; the timer never holds the
   * process. `lookup` answers whether the host has an address (default: the host's interfaces, both families).
   */
  constructor(
    addresses: string | readonly string[],
    private readonly log: Logger,
    intervalMs = DEFAULT_UNDERLAY_CHECK_MS,
    private readonly lookup: (address: string) => boolean = hostHasAddress,
  ) {
    for (const address of typeof addresses === 'string' ? [addresses] : addresses) this.present.set(address, true);
    this.timer = setInterval(() => this.check(), intervalMs);
    this.timer.unref();
  }

  get state(): UnderlayState {
    const missing = this.missing();
    return missing.length === 0 ? { addressPresent: true } : { addressPresent: false, problem: missing.map((a) => this.problem(a)).join('; ') };
  }

  /** Looks now; logs each change of state. Never throws. */
  check(): void {
    for (const [address, was] of this.present) {
      let now: boolean;
      try {
        now = this.lookup(address);
      } catch (err) {
        this.log.warn('could not list the host interfaces', { error: (err as Error).message });
        return;
      }
      if (now === was) continue;
      this.present.set(address, now);
      const field = address.includes(':') ? 'publicIpv6' : 'publicIp';
      if (now) this.log.info('the underlay address is back: forwarding can resume', { [field]: address });
      else this.log.error(this.problem(address), { [field]: address });
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private missing(): string[] {
    return [...this.present].filter(([, here]) => !here).map(([address]) => address);
  }

  private problem(address: string): string {
    const flag = address.includes(':') ? '--public-ipv6' : '--public-ip';
    return `the underlay address ${address} is on no interface of this host: nothing can be sent to or received from other nodes over it; put the address back (ip addr add) or restart the agent with the new ${flag}`;
  }
}
