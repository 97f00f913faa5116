// The virtio_net_hdr a TUN opened with IFF_VNET_HDR puts before every packet (10 bytes; struct virtio_net_hdr in
// linux/virtio_net.h). It tells us the kernel handed over a TCP super-packet (GSO) to segment, or a packet whose
// checksum is only partial (NEEDS_CSUM). Fields are little-endian on the machines we run on (TUN uses host order).
import { HeaderView } from './view';

const F = {
  FLAGS: 0,
  GSO_TYPE: 1,
  HDR_LEN: 2,
  GSO_SIZE: 4,
  CSUM_START: 6,
  CSUM_OFFSET: 8,
  END: 10,
} as const;

export const VIRTIO_NET_HDR_LEN = F.END;
/** The largest read or write of an offload TUN: a 64 KB IPv4 super-packet behind its virtio header. */
export const MAX_VIRTIO_NET_PACKET_LEN = 65535 + VIRTIO_NET_HDR_LEN;
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
export const VIRTIO_NET_HDR_GSO_NONE = 0;
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;

export class VirtioNetHeaderView extends HeaderView {

  get needsChecksum(): boolean {
    return (this.buf[this.off + F.FLAGS] & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0;
  }

  get gsoType(): number {
    return this.buf[this.off + F.GSO_TYPE];
  }

  /** Bytes of IP + TCP headers in a GSO packet. */
  get headerLength(): number {
    return this.buf.readUInt16LE(this.off + F.HDR_LEN);
  }

  /** Payload bytes per segment of a GSO packet. */
  get gsoSize(): number {
    return this.buf.readUInt16LE(this.off + F.GSO_SIZE);
  }

  get checksumStart(): number {
    return this.buf.readUInt16LE(this.off + F.CSUM_START);
  }

  get checksumOffset(): number {
    return this.buf.readUInt16LE(this.off + F.CSUM_OFFSET);
  }

  /** A header that says nothing: a plain, fully checksummed packet. */
  clear(): void {
    this.buf.fill(0, this.off, this.off + F.END);
  }
}
