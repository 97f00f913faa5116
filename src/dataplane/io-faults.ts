// What the engine does when a system call of its loops fails, so that nothing a peer or the kernel does makes the
// agent die with a stack. Native calls throw Node-shaped system errors (code, errno, syscall: native/errors.cc).
//   transient  the kernel refused this batch (no buffer memory, a firewall, no route, a peer's ICMP, MTU):
//              the packets are counted as dropped under <stage>/<verb>-<CODE> and the first of each kind is logged,
//              with what to do about it; forwarding goes on.
//   fatal      the device or socket itself is unusable (our TUN deleted: EBADFD/EIO/ENODEV on its fd; a closed or
//              broken fd: EBADF, ENOTSOCK, EFAULT...): the engine stops and reports it once (EngineOptions.onFatal).
//   internal   not a system error (a bug of ours: RangeError, TypeError): counted as engine/internal-error and
//              logged once with its stack; the round's slots are returned and forwarding goes on.
// Errno meanings: errno(3), udp(7), ip(7), raw(7); the TUN ones from drivers/net/tun.c (tun_chr_read_iter and
// tun_get_user return -EBADFD once the device is detached; tun_put_user/tun_get_user -EIO when it is down or gone).
import type { DatagramSocket } from '../io/types';
import type { DropCounters } from './counters';
import type { DataPlaneLog } from './log';


/** Which call failed: the TUN (read/write) or the underlay socket (recv/send). */
export type IoDoor = 'tun-read' | 'tun-write' | 'underlay-recv' | 'underlay-send';

export type FaultKind = 'transient' | 'fatal' | 'internal';

/** Transient codes and what the operator can do about each. */
const TRANSIENT: Record<string, string> = {
  ENOBUFS: 'the kernel ran out of socket or device buffer memory; lower the load or raise net.core.wmem_max / rmem_max',
  ENOMEM: 'the kernel ran out of memory for this batch; check the host memory',
  EPERM: 'a firewall rule (iptables / nftables) refused the packets: allow the overlay (VXLAN UDP port or IP protocol 4) between the nodes',
  EACCES: 'a firewall rule or socket permission refused the packets: allow the overlay between the nodes',
  EHOSTUNREACH: 'the underlay has no route to a peer (or an ICMP host unreachable came back): check the underlay routes and the peers\' public IPs',
  ENETUNREACH: 'the underlay has no route to a peer\'s network: check the underlay routes and the peers\' public IPs',
  EHOSTDOWN: 'a peer host is down (no ARP answer on the underlay)',
  ENETDOWN: 'the underlay interface is down: bring it up',
  EADDRNOTAVAIL: 'our public IP is no longer on this host: restore it or restart the agent with the right --public-ip',
  ECONNREFUSED: 'a peer answered with ICMP port unreachable: is its agent running and listening on the VXLAN port?',
  EMSGSIZE: 'a datagram exceeded the underlay MTU: check that the overlay MTU is the underlay MTU minus the encapsulation overhead',
  EINVAL: 'the kernel refused a datagram as invalid',
  EAGAIN: 'the kernel queue was full',
  EWOULDBLOCK: 'the kernel queue was full',
  EINTR: 'a system call was interrupted',
  ETIMEDOUT: 'a peer did not answer in time',
  ECONNRESET: 'a peer reset the connection',
};

export function isSystemErrorLike(error: unknown): error is Error & { code: string; errno: number; syscall?: string } {
  if (!(error instanceof Error)) return false;
  const fields = error as Error & { code?: unknown; errno?: unknown };
  return typeof fields.code === 'string' && typeof fields.errno === 'number';
}

/** transient / fatal / internal for an error thrown by a call through `door` (see the file comment). */
export function classifyFault(error: unknown): FaultKind {
  if (!isSystemErrorLike(error)) return 'internal';
  return Object.prototype.hasOwnProperty.call(TRANSIENT, error.code) ? 'transient' : 'fatal';
}

const STAGE: Record<IoDoor, string> = { 'tun-read': 'tun', 'tun-write': 'tun', 'underlay-recv': 'underlay', 'underlay-send': 'underlay' };
const VERB: Record<IoDoor, string> = { 'tun-read': 'read', 'tun-write': 'write', 'underlay-recv': 'recv', 'underlay-send': 'send' };

/** Counts and logs faults for one engine; logs each kind (door + code) once. */
export class IoFaults {
  private readonly logged = new Set<string>();

  constructor(
    private readonly drops: DropCounters,
    private readonly log: DataPlaneLog,
    /** Names of the devices, for messages: the TUN's and the socket's. */
    private readonly tunName: string,
    private readonly socketLabel: string,
  ) {}

  /**
   * Handles an error thrown through `door` that cost `lost` packets (0 for a read: none were taken). Returns the
   * kind; for 'fatal' the caller stops the engine with fatalError(error, door).
   */
  handle(error: unknown, door: IoDoor, lost: number): FaultKind {
    const kind = classifyFault(error);
    if (kind === 'fatal') return kind;
    if (kind === 'internal') {
      this.drops.count('engine', 'internal-error', Math.max(lost, 1));
      this.once(`internal:${door}`, () =>
        this.log.error('data plane error (a bug: please report it with this line); the batch was dropped and forwarding goes on', {
          door,
          error: error instanceof Error ? error.message : String(error),
          stack: error instanceof Error ? error.stack : undefined,
        }),
      );
      return kind;
    }
    const code = (error as { code: string }).code;
    // Reads lose nothing we could count one by one: count the failed call.
    this.drops.count(STAGE[door], `${VERB[door]}-${code}`, Math.max(lost, 1));
    this.once(`${door}:${code}`, () =>
      this.log.warn(`${this.deviceOf(door)} ${VERB[door]} failed with ${code}: packets dropped and counted (${STAGE[door]}/${VERB[door]}-${code}); ${TRANSIENT[code]}`, {
        error: (error as Error).message,
      }),
    );
    return kind;
  }

  /**
   * Counts `lost` datagrams a send did not hand to the kernel, under underlay/send-<CODE> when the socket can say
   * why (DatagramSocket.takeSendError: a firewall's EPERM, ENOBUFS, a full socket's EAGAIN...), else
   * underlay/send-failed; the first of each code is logged with what to do.
   */
  sendShortfall(socket: DatagramSocket, lost: number): void {
    if (lost <= 0) return;
    const code = socket.takeSendError?.();
    this.drops.count('underlay', `send-${code ?? 'failed'}`, lost);
    if (code === undefined) return;
    this.once(`underlay-send:${code}`, () =>
      this.log.warn(`underlay ${this.socketLabel} send failed with ${code}: packets dropped and counted (underlay/send-${code}); ${TRANSIENT[code] ?? 'see errno(3)'}`),
    );
  }

  /** The error the engine reports through onFatal: one line saying what happened and what to do. */
  fatalError(error: unknown, door: IoDoor): Error {
    const code = isSystemErrorLike(error) ? error.code : 'unknown';
    const cause = error instanceof Error ? error.message : String(error);
    const message =
      door === 'tun-read' || door === 'tun-write'
        ? `TUN device ${this.tunName} is gone or unusable (${cause}): was it deleted (ip link del)? The data plane stopped; restart the agent to recreate it`
        : `the underlay ${this.socketLabel} is unusable (${cause}); the data plane stopped; restart the agent`;
    return Object.assign(new Error(message, { cause: error }), { code, door });
  }

  private deviceOf(door: IoDoor): string {
    return STAGE[door] === 'tun' ? `TUN ${this.tunName}` : `underlay ${this.socketLabel}`;
  }

  private once(key: string, write: () => void): void {
    if (this.logged.has(key)) return;
    this.logged.add(key);
    write();
  }
}
