// A bounded flood of malformed VXLAN datagrams from a leased node's own underlay address (so they pass the sender
// check and reach the decapsulation code): valid frames to the receiver's VTEP, then mutated by a seeded PRNG
// (truncated anywhere, random bytes, IHL and total-length lies, flags, foreign and forged inner addresses, ARP).
// Usage: flood.child.ts <from ip> <to ip> <port> <vni> <src mac> <dst mac> <from subnet .0> <to subnet .0> <count>
// <max seconds>. Prints JSON {sent}.
import { createSocket } from 'node:dgram';
import { emitArp, ARP_REQUEST } from '../../src/wire/arp';
import { parseIPv4, parseMac } from '../../src/wire/address';
import { emitIpv4 } from '../../src/wire/ipv4';

const [from, to, portText, vniText, srcMacText, dstMacText, fromSubnetText, toSubnetText, countText, secondsText] = process.argv.slice(2);
const port = Number(portText);
const vni = Number(vniText);
const srcMac = parseMac(srcMacText);
const dstMac = parseMac(dstMacText);
const count = Number(countText);
const deadline = Date.now() + Number(secondsText) * 1000;

let seed = 0x12345678;
function random(n: number): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) % n;
}

const fromSubnet = parseIPv4(fromSubnetText);
const toSubnet = parseIPv4(toSubnetText);
/** Inner addresses besides the two /24 leases: a third subnet, the underlay, loopback, broadcast, multicast. */
const addresses = ['10.17.0.5', '10.17.99.1', '192.0.2.12', '127.0.0.1', '255.255.255.255', '224.0.0.1'].map(parseIPv4);

function frame(innerSrc: number, innerDst: number): Buffer {
  const arp = random(10) === 0;
  const payload = arp ? 28 : 20 + random(1400);
  const f = Buffer.alloc(8 + 14 + payload);
  f[0] = 0x08;
  f.writeUIntBE(vni, 4, 3);
  f.writeUIntBE(dstMac, 8, 6);
  f.writeUIntBE(srcMac, 14, 6);
  if (arp) {
    f.writeUInt16BE(0x0806, 20);
    emitArp({ operation: ARP_REQUEST, senderMac: srcMac, senderIp: innerSrc, targetMac: 0, targetIp: innerDst }, f, 22);
  } else {
    f.writeUInt16BE(0x0800, 20);
    emitIpv4({ source: innerSrc, destination: innerDst, protocol: [1, 6, 17, 47][random(4)], payloadLength: payload - 20, ttl: 64, moreFragments: random(4) === 0 }, f, 22);
  }
  return f;
}

function mutate(f: Buffer): Buffer {
  switch (random(8)) {
    case 0:
      return f.subarray(0, random(f.length + 1));
    case 1:
      for (let i = random(4); i >= 0; i--) f[random(f.length)] = random(256);
      return f;
    case 2:
      f[22] = 0x40 | random(16); // IHL lie
      return f;
    case 3:
      f.writeUInt16BE(random(65536), 24); // total length lie
      return f;
    case 4:
      f[0] = random(256); // VXLAN flags
      return f;
    default:
      return f;
  }
}

const socket = createSocket('udp4');
socket.bind(0, from, () => {
  let sent = 0;
  let inFlight = 0;
  const sendMore = (): void => {
    while (inFlight < 64 && sent < count && Date.now() < deadline) {
      // Inner addresses: mostly the sender's lease to ours (so that mutations reach deep), else anything.
      const src = random(4) === 0 ? addresses[random(addresses.length)] : fromSubnet + random(256);
      const dst = random(4) === 0 ? addresses[random(addresses.length)] : toSubnet + random(256);
      const datagram = mutate(frame(src, dst));
      inFlight++;
      sent++;
      socket.send(datagram, port, to, () => {
        inFlight--;
        if (sent >= count || Date.now() >= deadline) {
          if (inFlight === 0) {
            process.stdout.write(`${JSON.stringify({ sent })}\n`);
            socket.close();
          }
        } else if (inFlight < 32) {
          sendMore();
        }
      });
    }
  };
  sendMore();
});
