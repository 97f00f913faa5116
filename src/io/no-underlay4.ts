// The IPv4 underlay of an IPv6-only node (flannel's `"EnableIPv4": false`): there is none. flannel's vxlan backend
// then makes only flannel-v6.<VNI>; vxtun's engine keeps its IPv4 socket slot and gets this stand-in, which never
// becomes readable and takes no datagram. Nothing is routed to it (an IPv6-only node programs no IPv4 routes, and
// every IPv6 peer is reached through the IPv6 socket); a send that still reached it is counted by the engine as
// underlay/send-ENETUNREACH, as for any short send, never thrown.
import type { PacketBatch } from './batch';
import type { DatagramSocket } from './types';

export class NoIpv4Underlay implements DatagramSocket {
  readonly kind = 'udp' as const;
  readonly family = 4 as const;
  readonly gro = false;
  private refused = false;

  /** Nothing arrives: there is no IPv4 socket. */
  recv(_batch: PacketBatch): number {
    return 0;
  }

  /** Takes nothing: the engine counts the shortfall (underlay/send-ENETUNREACH). */
  send(batch: PacketBatch): number {
    if (batch.count > 0) this.refused = true;
    return 0;
  }

  takeSendError(): string | undefined {
    if (!this.refused) return undefined;
    this.refused = false;
    return 'ENETUNREACH';
  }

  watch(_onReadable: () => void): void {
    // never readable
  }

  close(): void {
    // nothing open
  }
}
