// `vxtun trace`: attach to a running agent and print each packet's journey, hop by hop (or JSON lines), optionally
// writing inner and outer packets to a pcap. The agent traces only while someone is attached.
import { existsSync } from 'node:fs';
import { InvalidArgumentError, type Command } from 'commander';
import { streamTrace, traceQuery } from '../../control/status-server';
import { formatJourney } from '../../trace/format';
import { writeJourney } from '../../trace/journey-pcap';
import { PcapWriter } from '../../trace/pcap';
import type { TraceFilter } from '../../trace/journey';
import { type IPv4, parseIPv4 } from '../../wire/address';
import { type IPv6, parseIPv6 } from '../../wire/address6';
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP } from '../../wire/ipv4';
import { IPPROTO_ICMPV6 } from '../../wire/ipv6';
import { integerIn, ipv4Address, unixSocketPath } from '../parse';
import { findSocket } from './status';

const PROTOCOLS: Record<string, number> = { icmp: IPPROTO_ICMP, icmpv6: IPPROTO_ICMPV6, 'ipv6-icmp': IPPROTO_ICMPV6, tcp: IPPROTO_TCP, udp: IPPROTO_UDP };

/** An inner address of either family: IPv4 (a number) or IPv6 (a bigint). */
function innerAddress(value: string): IPv4 | IPv6 {
  try {
    return value.includes(':') ? parseIPv6(value) : parseIPv4(value);
  } catch {
    throw new InvalidArgumentError(`expected an IPv4 or IPv6 address, got "${value}"`);
  }
}

/** The trace filter's field for `address` by its family: `host` or `host6`, and so on. */
function byFamily(key: 'host' | 'src' | 'dst', address: IPv4 | IPv6 | undefined): TraceFilter {
  if (address === undefined) return {};
  return typeof address === 'bigint' ? { [`${key}6`]: address } : { [key]: address };
}

function protocol(value: string): number {
  const name = value.toLowerCase();
  if (Object.hasOwn(PROTOCOLS, name)) return PROTOCOLS[name]!;
  if (/^\d+$/.test(value)) return integerIn(0, 255)(value);
  throw new InvalidArgumentError(`expected icmp, icmpv6, tcp, udp or a protocol number from 0 to 255, got "${value}"`);
}

/** The pcap file, or an error that names it and says why it could not be opened. */
function openPcap(path: string): PcapWriter {
  try {
    return PcapWriter.open(path);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'its directory does not exist'
      : e.code === 'EACCES' || e.code === 'EPERM' ? 'permission denied'
        : e.code === 'EISDIR' ? 'it is a directory' : e.message;
    throw new Error(`cannot open the pcap file ${path}: ${why}`);
  }
}

export function traceCommand(program: Command): void {
  program
    .command('trace')
    .description("print each packet's journey through a running agent: TUN, route, neighbor, FDB, outer headers, socket; drops with reasons")
    .option('--host <ip>', 'only packets from or to this inner address (IPv4 or IPv6)', innerAddress)
    .option('--src <ip>', 'only packets from this inner address (IPv4 or IPv6)', innerAddress)
    .option('--dst <ip>', 'only packets to this inner address (IPv4 or IPv6)', innerAddress)
    .option('--proto <name>', 'only this inner protocol: icmp, icmpv6, tcp, udp or a number', protocol)
    .option('--count <n>', 'stop after this many packets', integerIn(1, 1_000_000))
    .option('--json', 'print one JSON object per packet')
    .option('--pcap <file>', 'also write inner and outer packets to this pcap file (Wireshark, tshark)')
    .option('--public-ip <ip>', 'the agent to attach to, by its public IP (when several run on this host)', ipv4Address)
    .option('--socket <path>', 'the agent socket to attach to', unixSocketPath)
    .action(async (opts) => {
      const path: string = opts.socket ?? findSocket(opts.publicIp);
      // Before the pcap is created (or truncated): no agent, no file.
      if (!existsSync(path)) throw new Error(`no agent is listening on ${path}: is "vxtun agent" running?`);
      const pcap = opts.pcap === undefined ? undefined : openPcap(opts.pcap);
      const query = traceQuery({
        ...byFamily('host', opts.host), ...byFamily('src', opts.src), ...byFamily('dst', opts.dst), protocol: opts.proto, withBytes: pcap !== undefined,
      });
      let seen = 0;
      let dropped = 0;
      let waiting = false;
      await new Promise<void>((resolve, reject) => {
        const stream = streamTrace(path, query, {
          onJourney: (journey) => {
            if (opts.count !== undefined && seen >= opts.count) return;
            seen++;
            if (pcap) writeJourney(pcap, journey);
            const { packet: _p, frame: _f, ...shown } = journey;
            // A slow reader of our output (a pager, a pipe) slows our reading of the agent: it drops, we stay small.
            if (!process.stdout.write(opts.json ? `${JSON.stringify(shown)}\n` : formatJourney(journey)) && !waiting) {
              waiting = true;
              stream.pause();
              process.stdout.once('drain', () => {
                waiting = false;
                stream.resume();
              });
            }
            if (opts.count !== undefined && seen >= opts.count) stop();
          },
          onDropped: (count) => {
            dropped += count;
            process.stderr.write(`${count} journeys dropped: the trace client was too slow\n`);
          },
          onEnd: (error) => (error && seen < (opts.count ?? Infinity) ? reject(error) : resolve()),
        });
        // Closing our end ends the stream without an 'end' event: settle here, or the loop empties with the promise open.
        function stop(): void {
          stream.close();
          resolve();
        }
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      }).finally(() => pcap?.close());
      if (!opts.json) process.stderr.write(`${seen} packet${seen === 1 ? '' : 's'} traced${dropped > 0 ? `, ${dropped} dropped by the agent (this client read too slowly)` : ''}${pcap ? `, written to ${opts.pcap}` : ''}\n`);
    });
}
