// The agent's local API on a Unix socket: `GET /status` (one JSON document, for `vxtun status`) and `GET /trace`
// (packet journeys as JSON lines for as long as the client stays, for `vxtun trace`). A socket file, not a TCP
// port, because both are local and root-only, and because namespaces of one host share the filesystem, not ports.
import { mkdirSync, rmSync } from 'node:fs';
import { type IncomingMessage, type Server, createServer, request } from 'node:http';
import { dirname } from 'node:path';
import type { Journey, TraceFilter } from '../trace/journey';


export const STATUS_DIR = '/run/vxtun';

export function defaultStatusSocket(publicIp: string): string {
  return `${STATUS_DIR}/agent-${publicIp}.sock`;
}

export interface AgentApi {
  status(): unknown;
  /** Starts sending journeys that pass the filter; returns the function that stops it. */
  trace(filter: TraceFilter, withBytes: boolean, send: (journey: Journey) => void): () => void;
}

/** The trace query: host, src, dst (IPv4), proto (number), bytes (1 to include packet bytes). */
export function traceQuery(filter: TraceFilter & { withBytes?: boolean }): string {
  const params = new URLSearchParams();
  for (const key of ['host', 'src', 'dst'] as const) if (filter[key] !== undefined) params.set(key, String(filter[key]));
  if (filter.protocol !== undefined) params.set('proto', String(filter.protocol));
  if (filter.withBytes) params.set('bytes', '1');
  return params.toString();
}

function parseTraceQuery(url: URL): { filter: TraceFilter; withBytes: boolean } {
  const number = (name: string): number | undefined => {
    const v = url.searchParams.get(name);
    return v === null ? undefined : Number(v);
  };
  const filter: TraceFilter = { host: number('host'), src: number('src'), dst: number('dst'), protocol: number('proto') };
  for (const [key, value] of Object.entries(filter)) if (value !== undefined && !Number.isInteger(value)) throw new Error(`bad ${key}`);
  return { filter, withBytes: url.searchParams.get('bytes') === '1' };
}

export async function serveAgentApi(path: string, api: AgentApi): Promise<Server> {
  mkdirSync(dirname(path), { recursive: true });
  rmSync(path, { force: true }); // a socket left by a killed agent
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://agent');
    if (url.pathname === '/status') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(api.status()));
      return;
    }
    if (url.pathname === '/trace') {
      let query: ReturnType<typeof parseTraceQuery>;
      try {
        query = parseTraceQuery(url);
      } catch (err) {
        res.writeHead(400).end((err as Error).message);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.flushHeaders();
      const stop = api.trace(query.filter, query.withBytes, (journey) => res.write(`${JSON.stringify(journey)}\n`));
      req.on('close', stop);
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(path, resolve));
  server.unref();
  return server;
}

function explainConnectError(path: string, err: NodeJS.ErrnoException): Error {
  return err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? new Error(`no agent is listening on ${path}: is "vxtun agent" running?`) : err;
}

export function fetchStatus(path: string, timeoutMs = 3000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: path, path: '/status', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk) => (body += chunk)).on('end', () => {
        try {
          resolve(JSON.parse(body));
        } catch (err) {
          reject(new Error(`agent at ${path} sent an unreadable status: ${(err as Error).message}`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`agent at ${path} did not answer within ${timeoutMs} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => reject(explainConnectError(path, err)));
    req.end();
  });
}

/** Streams journeys from the agent until close() or the agent goes away (then `onEnd` is called). */
export function streamTrace(
  path: string,
  query: string,
  onJourney: (journey: Journey) => void,
  onEnd: (error?: Error) => void,
): { close(): void } {
  const req = request({ socketPath: path, path: `/trace?${query}` }, (res: IncomingMessage) => {
    if (res.statusCode !== 200) {
      onEnd(new Error(`agent at ${path} refused the trace (HTTP ${res.statusCode})`));
      res.resume();
      return;
    }
    let buffered = '';
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      buffered += chunk;
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (line.length > 0) onJourney(JSON.parse(line) as Journey);
      }
    });
    res.on('end', () => onEnd());
  });
  req.on('error', (err: NodeJS.ErrnoException) => onEnd(explainConnectError(path, err)));
  req.end();
  return { close: () => req.destroy() };
}

