// Option parsers for commander: each names the option and the bad value, so a typo fails before anything starts.
import { InvalidArgumentError } from 'commander';
import { validateTunOptions } from '../io/tun';
import { type IPv4, type Mac, parseCidr, parseIPv4, parseMac } from '../wire/address';
import { type IPv6, parseCidr6, parseIPv6 } from '../wire/address6';

export function integerIn(min: number, max: number): (value: string) => number {
  return (value) => {
    if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
      throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}, got "${value}"`);
    }
    return Number(value);
  };
}

export function ipv4Address(value: string): IPv4 {
  try {
    return parseIPv4(value);
  } catch {
    throw new InvalidArgumentError(`expected an IPv4 address like 192.0.2.10, got "${value}"`);
  }
}

/** "192.0.2.1,192.0.2.2": a comma-separated list of IPv4 addresses. */
export function ipv4List(value: string): IPv4[] {
  return value.split(',').map((part) => ipv4Address(part.trim()));
}

export function cidr(value: string): string {
  try {
    parseCidr(value);
    return value;
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/** An IPv6 CIDR such as fd00:10:244::/56 (host bits must be clear), kept as text. */
export function cidr6(value: string): string {
  try {
    parseCidr6(value);
    return value;
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/** An IPv6 address such as 2001:db8::1. */
export function ipv6Address(value: string): IPv6 {
  try {
    return parseIPv6(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

export function macAddress(value: string): Mac {
  try {
    return parseMac(value);
  } catch {
    throw new InvalidArgumentError(`expected a MAC address like 02:42:c0:00:02:0a, got "${value}"`);
  }
}

export function oneOf<T extends string>(choices: readonly T[]): (value: string) => T {
  return (value) => {
    if (!(choices as readonly string[]).includes(value)) {
      throw new InvalidArgumentError(`expected one of ${choices.join(', ')}, got "${value}"`);
    }
    return value as T;
  };
}

export function hostPort(value: string): { host: string; port: number } {
  const match = /^(.*):(\d+)$/.exec(value);
  if (match === null || Number(match[2]) < 1 || Number(match[2]) > 65535) {
    throw new InvalidArgumentError(`expected HOST:PORT like 127.0.0.1:9469, got "${value}"`);
  }
  return { host: match[1] || '0.0.0.0', port: Number(match[2]) };
}

/** A node name as Kubernetes and host names spell them: letters, digits, '.', '_', '-', 1-253 characters. */
export function nodeName(value: string): string {
  if (!/^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/.test(value)) {
    throw new InvalidArgumentError(`expected a node name like node-1 or node-1.example.com (letters, digits, '.', '_', '-'), got "${value}"`);
  }
  return value;
}

/** A TUN device name as Linux takes it (1-15 characters of letters, digits, '_', '.', '-'), checked as the TUN will. */
export function tunName(value: string): string {
  try {
    validateTunOptions({ name: value, mtu: 1500 });
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  return value;
}

/** Linux's sun_path holds 108 bytes, the last a NUL: a longer socket path fails only at bind(), after the agent started. */
const MAX_UNIX_SOCKET_PATH = 107;

export function unixSocketPath(value: string): string {
  if (value.length === 0) throw new InvalidArgumentError('expected a socket path, got ""');
  if (Buffer.byteLength(value) > MAX_UNIX_SOCKET_PATH) {
    throw new InvalidArgumentError(`socket path too long: Linux allows ${MAX_UNIX_SOCKET_PATH} bytes, "${value}" has ${Buffer.byteLength(value)}`);
  }
  return value;
}

/** A store URL: file:PATH or etcd://HOST:PORT (memory: for tests). A bare path gets the file: it probably meant. */
export function storeUrl(value: string): string {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(value)?.[1]?.toLowerCase();
  if (scheme === 'file' || scheme === 'etcd' || scheme === 'memory') return value;
  if (scheme === undefined && /^[/.~]/.test(value)) {
    throw new InvalidArgumentError(`unknown store type "${value}": for a store directory write file:${value}`);
  }
  throw new InvalidArgumentError(`unknown store type "${scheme ?? value}" in "${value}" (expected file:PATH or etcd://HOST:PORT)`);
}
