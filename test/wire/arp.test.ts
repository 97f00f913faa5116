import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseIPv4, parseMac } from '../../src/wire/address';
import { ARP_PACKET_LEN, ARP_REPLY, ARP_REQUEST, ArpView, checkArp, emitArp, parseArp, type ArpRepr } from '../../src/wire/arp';
import { WireError } from '../../src/wire/errors';
import { OFFSETS, VXLAN_ARP_FRAME, hex } from './fixtures';

const REQUEST = VXLAN_ARP_FRAME.subarray(OFFSETS.INNER_PAYLOAD);

test('decode: the kernel VTEP asking who has 10.1.1.2', () => {
  assert.is(REQUEST.length, ARP_PACKET_LEN);
  const view = new ArpView(VXLAN_ARP_FRAME, OFFSETS.INNER_PAYLOAD);
  assert.is(view.hardwareType, 1);
  assert.is(view.protocolType, 0x0800);
  assert.is(view.hardwareLength, 6);
  assert.is(view.protocolLength, 4);
  assert.equal(parseArp(REQUEST), {
    operation: ARP_REQUEST,
    senderMac: parseMac('02:00:00:00:01:01'),
    senderIp: parseIPv4('10.1.1.1'),
    targetMac: 0,
    targetIp: parseIPv4('10.1.1.2'),
  });
});

test('encode: emit reproduces the captured request; a reply round-trips', () => {
  const out = Buffer.alloc(ARP_PACKET_LEN, 0xaa);
  assert.is(emitArp(parseArp(REQUEST), out, 0), ARP_PACKET_LEN);
  assert.equal(out, REQUEST);

  const reply: ArpRepr = {
    operation: ARP_REPLY,
    senderMac: parseMac('66:0a:0b:0c:0d:0e'),
    senderIp: parseIPv4('10.1.1.2'),
    targetMac: parseMac('02:00:00:00:01:01'),
    targetIp: parseIPv4('10.1.1.1'),
  };
  emitArp(reply, out, 0);
  assert.is(out.toString('hex'), '0001080006040002660a0b0c0d0e0a010102020000000101' + '0a010101');
  assert.equal(parseArp(out), reply);
});

test('answering in place: the view turns a request into a reply', () => {
  const buf = Buffer.from(REQUEST);
  const v = new ArpView().wrap(buf, 0);
  const asker = { mac: v.senderMac, ip: v.senderIp };
  v.operation = ARP_REPLY;
  v.targetMac = asker.mac;
  v.targetIp = asker.ip;
  v.senderIp = parseIPv4('10.1.1.2');
  v.senderMac = parseMac('66:00:00:00:00:02');
  assert.equal(parseArp(buf), {
    operation: ARP_REPLY,
    senderMac: parseMac('66:00:00:00:00:02'),
    senderIp: parseIPv4('10.1.1.2'),
    targetMac: parseMac('02:00:00:00:01:01'),
    targetIp: parseIPv4('10.1.1.1'),
  });
});

test('checkArp table: lengths and non-Ethernet/IPv4 ARP', () => {
  const withByte = (at: number, value: number): Buffer => {
    const b = Buffer.from(REQUEST);
    b[at] = value;
    return b;
  };
  const cases: Array<[string, Buffer, number, string | undefined]> = [
    ['valid', REQUEST, 28, undefined],
    ['trailing padding is fine (Ethernet minimum frame)', Buffer.concat([REQUEST, Buffer.alloc(18)]), 46, undefined],
    ['27 bytes', REQUEST, 27, 'truncated'],
    ['len beyond buffer', REQUEST.subarray(0, 20), 28, 'truncated'],
    ['hardware type 6 (IEEE 802)', withByte(1, 6), 28, 'unsupported'],
    ['protocol IPv6', hex('000186dd06100001' + '00'.repeat(40)), 48, 'unsupported'],
    ['hardware length 8', withByte(4, 8), 28, 'unsupported'],
    ['protocol length 16', withByte(5, 16), 28, 'unsupported'],
    ['unknown operation is still valid', withByte(7, 9), 28, undefined],
  ];
  for (const [name, buf, len, expected] of cases) assert.is(checkArp(buf, 0, len), expected, name);
  assert.throws(() => parseArp(withByte(1, 6)), (err: unknown) => err instanceof WireError && err.problem === 'unsupported');
  assert.is(parseArp(withByte(7, 9)).operation, 9);
});

test.run();
