// The agent's local API on a Unix socket: `GET /status` (one JSON document, for `vxtun status`) and `GET /trace`
// (packet journeys as JSON lines for as long as the client stays, for `vxtun trace`). A socket file, not a TCP
// port, because both are local and root-only, and because namespaces of one host share the filesystem, not ports.
//
// Nothing a client asks can end the agent: every handler's failure is answered with an HTTP error and a JSON body
// `{"error": "<reason>"}` that the CLI prints. A trace client that reads slowly costs the agent at most
// `maxBufferedBytes` of queued output: past it, journeys for that client are dropped and counted, and the client is
// told with a line `{"dropped": N}` as soon as its stream has room again.
//
// A client cannot hold the agent's file descriptors either (the agent needs them for iptables, netlink, etcd): at most
// `maxConnections` sockets at once (the next are closed on accept), a request must arrive complete within
// `requestTimeoutMs` (else 408 and closed), and an idle keep-alive socket is closed after a second.
import { mkdirSync, rmSync } from 'node:fs';
import { type IncomingMessage, type Server, type ServerResponse, createServer, request } from 'node:http';
import type { Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Journey, TraceFilter } from '../trace/journey';
import { parseIPv4 } from '../wire/address';
import { type IPv6, formatIPv6, parseIPv6 } from '../wire/address6';
import { ApiError, describeFailure } from './api-error';
import { type Logger, nullLogger } from './log';

export const STATUS_DIR = '/run/vxtun';

/** Concurrent `vxtun trace` clients one agent serves; the next one is answered 503. */
export const DEFAULT_MAX_TRACE_CLIENTS = 8;
/** Sockets the API server holds at once (8 of them may be traces); further ones are closed as they are accepted. */
export const DEFAULT_MAX_CONNECTIONS = 32;
/** Time for a request's headers and body to arrive complete; a half-sent request is answered 408 and closed. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 5000;
/** An idle keep-alive socket is closed after this. */
export const KEEP_ALIVE_TIMEOUT_MS = 1000;
/** Output queued for one trace client (bytes) before its journeys are dropped. */
export const DEFAULT_MAX_BUFFERED_BYTES = 1024 * 1024;

export function defaultStatusSocket(publicIp: string): string {
  return `${STATUS_DIR}/agent-${publicIp}.sock`;
}

export interface AgentApi {
  status(): unknown;
  /**
   * Starts sending journeys that pass the filter; returns the function that stops it. May throw (an ApiError for
   * a refusal with its HTTP status, e.g. 409 when the mode has no data plane to trace): the client is told why.
   */
  trace(filter: TraceFilter, withBytes: boolean, send: (journey: Journey) => void): () => void;
}

export interface ApiServerOptions {
  /** Default 8. */
  maxTraceClients?: number;
  /** Per trace client, bytes; default 1 MiB. */
  maxBufferedBytes?: number;
  /** Default DEFAULT_MAX_CONNECTIONS. */
  maxConnections?: number;
  /** Default DEFAULT_REQUEST_TIMEOUT_MS. */
  requestTimeoutMs?: number;
  /** Where failed requests (500) and socket errors are reported. */
  log?: Logger;
}

export interface ConnectionLimits {
  maxConnections: number;
  requestTimeoutMs: number;
}

/**
 * createServer's options for `limits`: Node enforces headersTimeout / requestTimeout from a periodic sweep
 * (connectionsCheckingInterval, 30 s by default), so the sweep runs at a quarter of the timeout, at most every second.
 */
export function limitedServerOptions(limits: ConnectionLimits): {
  requestTimeout: number;
  headersTimeout: number;
  keepAliveTimeout: number;
  connectionsCheckingInterval: number;
} {
  const t = limits.requestTimeoutMs;
  return {
    requestTimeout: t,
    headersTimeout: t,
    keepAliveTimeout: Math.min(KEEP_ALIVE_TIMEOUT_MS, t),
    connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(t / 4))),
  };
}

/**
 * Caps the sockets `server` holds; connections past the cap are closed by Node as they are accepted ('drop'), and
 * logged at most once per 10 s with how many were dropped.
 */
export function limitConnections(server: Server, limits: ConnectionLimits, log: Logger, what: string): void {
  server.maxConnections = limits.maxConnections;
  let dropped = 0;
  let lastLog = 0;
  server.on('drop', () => {
    dropped++;
    const now = Date.now();
    if (now - lastLog < 10_000) return;
    lastLog = now;
    log.warn(`${what}: connection limit reached, new connections closed`, { maxConnections: limits.maxConnections, droppedSoFar: dropped });
  });
}

/** The answer to a request that did not arrive complete in time. */
export const REQUEST_TIMEOUT_ANSWER = 'HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n';

/** The trace query: host, src, dst (IPv4), proto (number), bytes (1 to include packet bytes). */
export function traceQuery(filter: TraceFilter & { withBytes?: boolean }): string {
  const params = new URLSearchParams();
  for (const key of ['host', 'src', 'dst'] as const) {
    const v4 = filter[key];
    const v6 = filter[`${key}6`];
    if (v4 !== undefined) params.set(key, String(v4));
    else if (v6 !== undefined) params.set(key, formatIPv6(v6));
  }
  if (filter.protocol !== undefined) params.set('proto', String(filter.protocol));
  if (filter.withBytes) params.set('bytes', '1');
  return params.toString();
}

/** The filter with each address in the field of its family (an IPv6 packet never matches an IPv4 address, nor the reverse). */
function filterOf(host: { v4?: number; v6?: IPv6 }, src: { v4?: number; v6?: IPv6 }, dst: { v4?: number; v6?: IPv6 }, protocol: number | undefined): TraceFilter {
  const filter: TraceFilter = {};
  if (host.v4 !== undefined) filter.host = host.v4;
  if (host.v6 !== undefined) filter.host6 = host.v6;
  if (src.v4 !== undefined) filter.src = src.v4;
  if (src.v6 !== undefined) filter.src6 = src.v6;
  if (dst.v4 !== undefined) filter.dst = dst.v4;
  if (dst.v6 !== undefined) filter.dst6 = dst.v6;
  if (protocol !== undefined) filter.protocol = protocol;
  return filter;
}

const TRACE_PARAMS = new Set(['host', 'src', 'dst', 'proto', 'bytes']);

/** Parses the trace query; throws ApiError 400 naming the bad parameter. Addresses: a 32-bit number, dotted quad or IPv6 text. */
export function parseTraceQuery(params: URLSearchParams): { filter: TraceFilter; withBytes: boolean } {
  for (const key of params.keys()) {
    if (!TRACE_PARAMS.has(key)) throw new ApiError(400, `unknown trace parameter "${key}" (expected host, src, dst, proto, bytes)`);
  }
  /** An IPv4 address (a 32-bit number or dotted quad) or an IPv6 one (text with colons). */
  const address = (name: string): { v4?: number; v6?: IPv6 } => {
    const v = params.get(name);
    if (v === null) return {};
    if (/^\d+$/.test(v) && Number(v) <= 0xffffffff) return { v4: Number(v) };
    try {
      return v.includes(':') ? { v6: parseIPv6(v) } : { v4: parseIPv4(v) };
    } catch {
      throw new ApiError(400, `bad trace parameter ${name}=${JSON.stringify(v)}: expected an IPv4 or IPv6 address`);
    }
  };
  const proto = params.get('proto');
  if (proto !== null && !(/^\d{1,3}$/.test(proto) && Number(proto) <= 255)) {
    throw new ApiError(400, `bad trace parameter proto=${JSON.stringify(proto)}: expected an IP protocol number 0-255`);
  }
  const bytes = params.get('bytes');
  if (bytes !== null && bytes !== '0' && bytes !== '1') throw new ApiError(400, `bad trace parameter bytes=${JSON.stringify(bytes)}: expected 0 or 1`);
  return {
    filter: filterOf(address('host'), address('src'), address('dst'), proto === null ? undefined : Number(proto)),
    withBytes: bytes === '1',
  };
}

/** Answers a failed request: a JSON `{"error"}` body, or, once a stream has begun, cutting the connection. */
export function answerError(res: ServerResponse, err: unknown, log: Logger, what: string): void {
  const { status, message } = describeFailure(err);
  if (status >= 500 && status !== 503) log.error(`${what} failed`, { error: message });
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { 'content-type': 'application/json' }).end(`${JSON.stringify({ error: message })}\n`);
}

/** Malformed HTTP from a client: answer 400 when the socket still takes it, never throw. */
export function onClientError(err: Error & { code?: string }, socket: Socket, log: Logger): void {
  log.debug('malformed request on the API socket', { error: err.message, code: err.code });
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    socket.end(`${REQUEST_TIMEOUT_ANSWER}${JSON.stringify({ error: 'the request did not arrive complete in time' })}\n`);
    return;
  }
  socket.end(`HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n${JSON.stringify({ error: err.message })}\n`);
}

/** What the API server adds to the status document: each attached trace client's queue, in bytes, and drops. */
export interface TraceClientStatus {
  /** Output queued in the agent for this client (bytes), at most about the bound (1 MiB by default). */
  queuedBytes: number;
  /** Journeys sent and journeys dropped because the client read too slowly, since it attached. */
  sentJourneys: number;
  droppedJourneys: number;
}

/** One trace client's stream, bounded: journeys past `maxBufferedBytes` of queued output are dropped and counted. */
class TraceStream {
  /** Dropped since the client was last told. */
  private pendingDrops = 0;
  private sent = 0;
  private dropped = 0;

  constructor(
    private readonly res: ServerResponse,
    private readonly maxBufferedBytes: number,
  ) {
    res.on('drain', () => this.reportDrops());
  }

  /** Called from the engine's loop: never throws. */
  send(journey: Journey): void {
    const res = this.res;
    if (res.destroyed || res.writableEnded) return;
    if (res.writableLength >= this.maxBufferedBytes) {
      this.pendingDrops++;
      this.dropped++;
      return;
    }
    try {
      this.reportDrops();
      res.write(`${JSON.stringify(journey)}\n`);
      this.sent++;
    } catch {
      res.destroy();
    }
  }

  get status(): TraceClientStatus {
    return { queuedBytes: this.res.writableLength, sentJourneys: this.sent, droppedJourneys: this.dropped };
  }

  private reportDrops(): void {
    if (this.pendingDrops === 0 || this.res.destroyed || this.res.writableEnded) return;
    this.res.write(`${JSON.stringify({ dropped: this.pendingDrops })}\n`);
    this.pendingDrops = 0;
  }
}

/** Serves `api` on the Unix socket `path` (replacing a stale socket file); the server does not hold the process. */
export async function serveAgentApi(path: string, api: AgentApi, options: ApiServerOptions = {}): Promise<Server> {
  const log = options.log ?? nullLogger;
  const maxTraceClients = options.maxTraceClients ?? DEFAULT_MAX_TRACE_CLIENTS;
  const maxBufferedBytes = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
  const traceClients = new Set<TraceStream>();

  const startTrace = (url: URL, res: ServerResponse): void => {
    if (traceClients.size >= maxTraceClients) {
      throw new ApiError(503, `${traceClients.size} trace clients are attached already, the most this agent serves: stop one and try again`);
    }
    const { filter, withBytes } = parseTraceQuery(url.searchParams);
    const stream = new TraceStream(res, maxBufferedBytes);
    const stop = api.trace(filter, withBytes, (journey) => stream.send(journey));
    traceClients.add(stream);
    res.on('close', () => {
      traceClients.delete(stream);
      try {
        stop();
      } catch (err) {
        log.error('stopping a trace failed', { error: (err as Error).message });
      }
    });
    res.on('error', () => {}); // a client that went away: 'close' follows
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    res.flushHeaders();
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://agent');
    } catch {
      throw new ApiError(400, `unreadable request path ${JSON.stringify(req.url)}`);
    }
    if (url.pathname !== '/status' && url.pathname !== '/trace') throw new ApiError(404, `no such resource ${url.pathname}: try /status or /trace`);
    if (req.method !== 'GET') throw new ApiError(405, `${req.method} ${url.pathname}: only GET is served`);
    if (url.pathname === '/status') {
      const status = api.status();
      const traces = [...traceClients].map((t) => t.status);
      const body = JSON.stringify(typeof status === 'object' && status !== null ? { ...status, traceClients: traces } : status);
      res.writeHead(200, { 'content-type': 'application/json' }).end(body);
      return;
    }
    startTrace(url, res);
  };

  mkdirSync(dirname(path), { recursive: true });
  rmSync(path, { force: true }); // a socket left by a killed agent
  const limits = {
    maxConnections: options.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
    requestTimeoutMs: options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
  };
  const server = createServer(limitedServerOptions(limits), (req, res) => {
    try {
      handle(req, res);
    } catch (err) {
      answerError(res, err, log, `${req.method} ${req.url}`);
    }
  });
  server.on('clientError', (err: Error, socket: Socket) => onClientError(err, socket, log));
  limitConnections(server, limits, log, 'status socket');
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(path, resolve));
  server.on('error', (err) => log.error('status socket failed', { path, error: err.message }));
  server.unref();
  return server;
}

function explainConnectError(path: string, err: NodeJS.ErrnoException): Error {
  return err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? new Error(`no agent is listening on ${path}: is "vxtun agent" running?`) : err;
}

/** The reason in an error answer's body: its JSON `error`, else the text itself (cut short), else the status. */
export function errorReason(statusCode: number | undefined, body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: unknown };
    if (typeof parsed.error === 'string') return parsed.error;
  } catch {
    // not JSON: an older or foreign server
  }
  const text = body.trim().slice(0, 200);
  return text.length > 0 ? text : `HTTP ${statusCode}`;
}

/** The agent's status document; rejects with the agent's reason when it answers with an error. */
export function fetchStatus(path: string, timeoutMs = 3000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: path, path: '/status', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('error', (err) => reject(new Error(`agent at ${path} broke off its status: ${err.message}`)));
      res.on('end', () => {
        if (res.statusCode !== 200) {
          reject(new Error(`agent at ${path} could not give its status (HTTP ${res.statusCode}): ${errorReason(res.statusCode, body)}`));
          return;
        }
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

export interface TraceHandlers {
  onJourney(journey: Journey): void;
  /** The agent dropped `count` journeys because this client read too slowly. */
  onDropped?(count: number): void;
  /** Called once: without an error when the agent ended the stream, with one when it refused, broke off or sent garbage. */
  onEnd(error?: Error): void;
}

export interface TraceStreamHandle {
  close(): void;
  /** Stops reading (the agent then queues, and past its bound drops); resume() reads again. */
  pause(): void;
  resume(): void;
}

/** Streams journeys from the agent until close(), the agent's end, or an error; handler errors end the stream too. */
export function streamTrace(path: string, query: string, handlers: TraceHandlers): TraceStreamHandle;
export function streamTrace(path: string, query: string, onJourney: (journey: Journey) => void, onEnd: (error?: Error) => void): TraceStreamHandle;
export function streamTrace(
  path: string,
  query: string,
  journeyOrHandlers: TraceHandlers | ((journey: Journey) => void),
  onEnd?: (error?: Error) => void,
): TraceStreamHandle {
  const handlers: TraceHandlers = typeof journeyOrHandlers === 'function' ? { onJourney: journeyOrHandlers, onEnd: onEnd! } : journeyOrHandlers;
  let ended = false;
  let response: IncomingMessage | undefined;
  const end = (error?: Error): void => {
    if (ended) return;
    ended = true;
    req.destroy();
    handlers.onEnd(error);
  };
  const line = (text: string): void => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new Error(`agent at ${path} sent an unreadable trace line: ${text.slice(0, 120)}`);
    }
    if (typeof parsed !== 'object' || parsed === null) throw new Error(`agent at ${path} sent an unreadable trace line: ${text.slice(0, 120)}`);
    const dropped = (parsed as { dropped?: unknown }).dropped;
    if (typeof dropped === 'number' && Object.keys(parsed).length === 1) handlers.onDropped?.(dropped);
    else handlers.onJourney(parsed as Journey);
  };
  const req = request({ socketPath: path, path: `/trace?${query}` }, (res: IncomingMessage) => {
    response = res;
    res.setEncoding('utf8');
    if (res.statusCode !== 200) {
      let body = '';
      res.on('data', (chunk: string) => {
        if (body.length < 4096) body += chunk;
      });
      res.on('end', () => end(new Error(`agent at ${path} refused the trace (HTTP ${res.statusCode}): ${errorReason(res.statusCode, body)}`)));
      res.on('error', (err) => end(new Error(`agent at ${path} refused the trace (HTTP ${res.statusCode}): ${err.message}`)));
      return;
    }
    let buffered = '';
    res.on('data', (chunk: string) => {
      buffered += chunk;
      let newline: number;
      try {
        while (!ended && (newline = buffered.indexOf('\n')) >= 0) {
          const text = buffered.slice(0, newline);
          buffered = buffered.slice(newline + 1);
          if (text.length > 0) line(text);
        }
      } catch (err) {
        end(err as Error);
      }
    });
    res.on('end', () => end());
    res.on('error', (err) => end(new Error(`agent at ${path} broke off the trace: ${err.message}`)));
    res.on('close', () => end(res.complete ? undefined : new Error(`agent at ${path} broke off the trace: it stopped or went away`)));
  });
  req.on('error', (err: NodeJS.ErrnoException) => end(explainConnectError(path, err)));
  req.end();
  return {
    close: () => {
      ended = true;
      req.destroy();
    },
    pause: () => response?.pause(),
    resume: () => response?.resume(),
  };
}
