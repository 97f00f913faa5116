// Whether this node's underlay address (--public-ip) is still on one of its interfaces. When it goes (`ip addr del`,
// DHCP, a NIC replaced) the agent cannot send or receive encapsulated traffic, yet nothing else would say so:
// a cheap periodic look at the host's addresses does, once when it goes and once when it returns.
import { interfaceWithAddress } from '../io/interfaces';
import type { Logger } from './log';

export const DEFAULT_UNDERLAY_CHECK_MS = 5000;

export interface UnderlayState {
  addressPresent: boolean;
  /** Set while the address is missing: what is wrong and what to do. */
  problem?: string;
}

export class UnderlayWatch {
  private present = true;
  private readonly timer: NodeJS.Timeout;

  /** Checks every `intervalMs` (default 5 s) that `address` (dotted quad) is on an interface; the timer never holds the process. */
  constructor(
    private readonly address: string,
    private readonly log: Logger,
    intervalMs = DEFAULT_UNDERLAY_CHECK_MS,
    private readonly lookup: (address: string) => unknown = interfaceWithAddress,
  ) {
    this.timer = setInterval(() => this.check(), intervalMs);
    this.timer.unref();
  }

  get state(): UnderlayState {
    return this.present ? { addressPresent: true } : { addressPresent: false, problem: this.problem() };
  }

  /** Looks now; logs a change of state. Never throws. */
  check(): void {
    let present: boolean;
    try {
      present = this.lookup(this.address) !== undefined;
    } catch (err) {
      this.log.warn('could not list the host interfaces', { error: (err as Error).message });
      return;
    }
    if (present === this.present) return;
    this.present = present;
    if (present) this.log.info('the underlay address is back: forwarding can resume', { publicIp: this.address });
    else this.log.error(this.problem(), { publicIp: this.address });
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private problem(): string {
    return `the underlay address ${this.address} is on no interface of this host: nothing can be sent to or received from other nodes; put the address back (ip addr add) or restart the agent with the new --public-ip`;
  }
}
