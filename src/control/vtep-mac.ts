// A VTEP MAC that survives restarts. A MAC that changes strands the neighbor and FDB entries peers hold for us
// (flannel#1155, #1788; calico#7281), so, like Calico's felix, we derive it from something stable instead of
// picking a random one: a hash of the node's identity, with the locally-administered bit set and the multicast bit clear.
import { createHash } from 'node:crypto';
import type { Mac } from '../wire/address';

export function deriveVtepMac(nodeIdentity: string): Mac {
  const digest = createHash('sha1').update(`vxtun-vtep:${nodeIdentity}`).digest();
  digest[0] = (digest[0] & 0xfe) | 0x02;
  return digest.readUIntBE(0, 6);
}
