// Which family a UdpSocket opens, from the address it is given (issue 12: the same open for both underlays), and the
// errors for addresses that are neither; no sockets are opened.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { formatEndpoint, underlayAddress } from '../../src/io/udp';

const Address = suite('UDP underlay address: IPv4 u32, IPv6 bigint, or text');

Address('numbers are IPv4, bigints and text with a colon IPv6, dotted text IPv4', () => {
  assert.is(underlayAddress(0xc0000201, 'x'), 0xc0000201);
  assert.is(underlayAddress('192.0.2.1', 'x'), 0xc0000201);
  assert.is(underlayAddress('2001:db8::1', 'x'), 0x20010db8000000000000000000000001n);
  assert.is(underlayAddress(1n, 'x'), 1n);
});

Address('bad addresses are refused with the option named', () => {
  assert.throws(() => underlayAddress('2001:db8::g', 'UDP address'), /UDP address "2001:db8::g" is not an IPv4 or IPv6 address/);
  assert.throws(() => underlayAddress('192.0.2', 'UDP address'), /is not an IPv4 or IPv6 address/);
  assert.throws(() => underlayAddress(-1n, 'UDP address'), /128-bit bigint/);
  assert.throws(() => underlayAddress(1n << 128n, 'UDP address'), /128-bit bigint/);
  assert.throws(() => underlayAddress(2 ** 32, 'UDP address'), /IPv4 address as a u32/);
});

Address('endpoints print as 192.0.2.1:8472 and [2001:db8::1]:8472', () => {
  assert.is(formatEndpoint(0xc0000201, 8472), '192.0.2.1:8472');
  assert.is(formatEndpoint(0x20010db8000000000000000000000001n, 8472), '[2001:db8::1]:8472');
});

Address.run();
