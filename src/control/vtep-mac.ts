// A VTEP MAC that survives restarts. A MAC that changes strands the neighbor and FDB entries peers hold for us
// (flannel#1155, #1788; calico#7281), so, like Calico's felix, we derive it from something stable instead of
// picking a random one: a hash of the node's identity, with the locally-administered bit set and the multicast bit clear.
// The identity is the node name (`vxtun agent --node-name`, default the host name), as felix hashes its node name
// (vxlan_resolver.go), so the MAC also survives a change of public IP; an agent given no name falls back to its
// public IP. Upgrading from a version that hashed the public IP changes the MAC once: the lease carries the new one and
// peers replace their entries for it (lease-sync.ts).
import { createHash } from 'node:crypto';
import type { Mac } from '../wire/address';

/** A unicast, locally administered MAC (48 bits in a number) from sha1("vxtun-vtep:" + identity). */
export function deriveVtepMac(nodeIdentity: string): Mac {
  const digest = createHash('sha1').update(`vxtun-vtep:${nodeIdentity}`).digest();
  digest[0] = (digest[0] & 0xfe) | 0x02;
  return digest.readUIntBE(0, 6);
}

/**
 * The MAC of our IPv6 VTEP (flannel's BackendV6Data.VtepMAC: flannel-v6.<VNI> is a second device with its own MAC).
 * Derived like the IPv4 one, from sha1("vxtun-vtep6:" + identity): as stable, and a different MAC, so that the
 * neighbor and FDB entries of the two VTEPs never collide on a peer.
 */
export function deriveVtepMac6(nodeIdentity: string): Mac {
  const digest = createHash('sha1').update(`vxtun-vtep6:${nodeIdentity}`).digest();
  digest[0] = (digest[0] & 0xfe) | 0x02;
  return digest.readUIntBE(0, 6);
}
