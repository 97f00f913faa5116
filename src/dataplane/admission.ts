// Who may put what into our TUN. A decapsulated IPv4 packet is admitted only when
//   (a) its outer source holds a lease (checked first, by the engine, so a stranger's packets count as a stranger's),
//   (b) its inner source lies in that sender's leased subnets (its VTEP address, the subnet's .0, included), and
//   (c) its inner destination lies in our own lease (our VTEP address included).
// Without (b) any leased node could inject packets "from" another node's pods; without (c) a peer could use us as
// a router into the host or other networks. The Linux vxlan device has no such rule (the kernel's routing and
// rp_filter do part of it); Calico's felix allowlists node addresses (FACTS.md). No allocation: two loads, mask compares.
import type { Cidr } from '../wire/address';
import { prefixMask } from '../wire/address';
import type { LeasedVtep } from './vtep-registry';

/** Offsets in the IPv4 header (RFC 791). */
const SOURCE = 12;
const DESTINATION = 16;

/** Why an inner packet was refused: the drop reason under stage 'inner-ipv4'. */
export type AdmissionProblem = 'spoofed-source' | 'not-for-us';

export class InnerAdmission {
  private readonly network: number;
  private readonly mask: number;
  /** An IPv6-only node (own subnet 0.0.0.0/0, flannel's empty IPv4 part): no inner IPv4 packet is for us. */
  private readonly noIPv4: boolean;

  constructor(ownSubnet: Cidr) {
    this.mask = prefixMask(ownSubnet.prefixLength);
    this.network = (ownSubnet.address & this.mask) >>> 0;
    this.noIPv4 = ownSubnet.prefixLength === 0;
  }

  /**
   * Checks the inner IPv4 packet at slab[off] (its header already validated: 20 bytes or more) sent by `sender`.
   * Returns undefined to admit it, else the reason to drop it.
   */
  check(slab: Buffer, off: number, sender: LeasedVtep): AdmissionProblem | undefined {
    if (!sender.holds(slab.readUInt32BE(off + SOURCE))) return 'spoofed-source';
    if (this.noIPv4 || ((slab.readUInt32BE(off + DESTINATION) & this.mask) >>> 0) !== this.network) return 'not-for-us';
    return undefined;
  }
}
