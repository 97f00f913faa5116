// The agent's local API on a Unix socket, against a fake agent: every failure is answered with a reason and the
// server lives on; a trace client that stops reading costs a bounded amount and is told what it missed.
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { type Server, createServer, request } from 'node:http';
import { type Socket, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ApiError } from '../../src/control/api-error';
import { type AgentApi, fetchStatus, parseTraceQuery, serveAgentApi, streamTrace, traceQuery } from '../../src/control/status-server';
import type { Journey } from '../../src/trace/journey';

const test = suite('control: status server');

const JOURNEY: Journey = { timeUs: 1, direction: 'outbound', verdict: 'sent', from: 'tun vxtun0', via: 'x'.repeat(200) };

interface Fake {
  api: AgentApi;
  sends: ((journey: Journey) => void)[];
  stopped: number;
}

function fakeApi(overrides: Partial<AgentApi> = {}): Fake {
  const fake: Fake = {
    sends: [],
    stopped: 0,
    api: {
      status: () => ({ ok: true }),
      trace: (_filter, _withBytes, send) => {
        fake.sends.push(send);
        return () => void fake.stopped++;
      },
      ...overrides,
    },
  };
  return fake;
}

async function withServer(fake: Fake, body: (path: string, server: Server) => Promise<void>, options = {}): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vxtun-api-'));
  const path = join(dir, 'agent.sock');
  const server = await serveAgentApi(path, fake.api, options);
  try {
    await body(path, server);
  } finally {
    server.closeAllConnections();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A raw request: status code and body text. */
function get(path: string, url: string, method = 'GET'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: path, path: url, method }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c) => (body += c)).on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject).end();
  });
}

/** Opens a trace with the given handlers and resolves with its end. */
function traceEnd(path: string, query: string): Promise<Error | undefined> {
  return new Promise((resolve) => streamTrace(path, query, { onJourney: () => {}, onEnd: resolve }));
}

test('a status handler that throws is answered 500 with its reason, and the next request is served', async () => {
  let fail = true;
  const fake = fakeApi({
    status: () => {
      if (fail) throw new Error('tables are being rebuilt');
      return { ok: true };
    },
  });
  await withServer(fake, async (path) => {
    const answer = await get(path, '/status');
    assert.is(answer.status, 500);
    assert.equal(JSON.parse(answer.body), { error: 'tables are being rebuilt' });
    try {
      await fetchStatus(path);
      assert.unreachable('fetchStatus should reject');
    } catch (err) {
      assert.match((err as Error).message, /could not give its status \(HTTP 500\): tables are being rebuilt/);
    }
    fail = false;
    assert.equal(await fetchStatus(path), { ok: true, traceClients: [] });
  });
});

test('a trace the agent refuses reaches the client with its status and reason; unknown paths and methods too', async () => {
  const fake = fakeApi({
    trace: () => {
      throw new ApiError(409, 'host-gw has no vxtun data plane to trace');
    },
  });
  await withServer(fake, async (path) => {
    const error = await traceEnd(path, '');
    assert.match(error?.message ?? '', /refused the trace \(HTTP 409\): host-gw has no vxtun data plane to trace/);
    assert.is((await get(path, '/nothing')).status, 404);
    assert.is((await get(path, '/status', 'DELETE')).status, 405);
    assert.equal(await fetchStatus(path), { ok: true, traceClients: [] });
  });
});

test('bad trace parameters are answered 400 naming the parameter', async () => {
  const fake = fakeApi();
  await withServer(fake, async (path) => {
    for (const [query, reason] of [
      ['host=10.17.1', /host="10\.17\.1": expected an IPv4 or IPv6 address/],
      ['proto=300', /proto="300"/],
      ['proto=tcp', /proto="tcp"/],
      ['bytes=yes', /bytes="yes"/],
      ['colour=red', /unknown trace parameter "colour"/],
      ['src=99999999999', /src="99999999999"/],
    ] as const) {
      const answer = await get(path, `/trace?${query}`);
      assert.is(answer.status, 400, query);
      assert.match(JSON.parse(answer.body).error, reason);
    }
    assert.is(fake.sends.length, 0, 'no trace was started');
  });
});

test('parseTraceQuery reads what traceQuery writes, and dotted quads', () => {
  const q = traceQuery({ host: 0x0a110101, protocol: 1, withBytes: true });
  assert.equal(parseTraceQuery(new URLSearchParams(q)), { filter: { host: 0x0a110101, protocol: 1 }, withBytes: true });
  assert.is(parseTraceQuery(new URLSearchParams('dst=10.17.2.1')).filter.dst, 0x0a110201);
});

test('trace queries carry IPv6 addresses into the IPv6 fields; a bad address names both families', () => {
  const q = traceQuery({ host6: 0xfd000017000000010000000000000002n, src: 0x0a110101, protocol: 58 });
  assert.equal(parseTraceQuery(new URLSearchParams(q)).filter, { host6: 0xfd000017000000010000000000000002n, src: 0x0a110101, protocol: 58 });
  assert.throws(() => parseTraceQuery(new URLSearchParams('dst=fd00::zz')), /expected an IPv4 or IPv6 address/);
});

test('malformed HTTP on the socket is answered 400 and the server goes on', async () => {
  await withServer(fakeApi(), async (path) => {
    const socket = connect(path);
    socket.write('THIS IS NOT HTTP\r\n\r\n');
    let text = '';
    socket.setEncoding('utf8').on('data', (c) => (text += c));
    await once(socket, 'close');
    assert.match(text, /^HTTP\/1\.1 400/);
    assert.equal(await fetchStatus(path), { ok: true, traceClients: [] });
    const odd = await get(path, '//');
    assert.is(odd.status, 400);
    assert.match(JSON.parse(odd.body).error, /unreadable request path/);
  });
});

/** A raw socket on `path` that has sent `text`; resolves with what it received once it is closed. */
function rawClient(path: string, text: string): { socket: Socket; closed: Promise<string> } {
  const socket = connect(path);
  let got = '';
  socket.setEncoding('utf8').on('data', (c) => (got += c));
  socket.on('error', () => {}); // a refused socket may be reset: 'close' follows
  if (text) socket.write(text);
  return { socket, closed: new Promise((resolve) => socket.on('close', () => resolve(got))) };
}

const HALF_SENT = 'GET /status HTTP/1.1\r\nhost: agent\r\n'; // the blank line never comes

test('past maxConnections half-sent requests are closed at once; the held ones go at the timeout; status works after', async () => {
  await withServer(
    fakeApi(),
    async (path, server) => {
      const held = [];
      for (let i = 0; i < 4; i++) held.push(rawClient(path, HALF_SENT));
      while ((await new Promise<number>((r) => server.getConnections((_e, n) => r(n)))) < 4) await new Promise((r) => setTimeout(r, 5));
      const extra = [rawClient(path, HALF_SENT), rawClient(path, ''), rawClient(path, HALF_SENT)];
      const started = Date.now();
      await Promise.all(extra.map((c) => c.closed));
      assert.ok(Date.now() - started < 1000, 'the extra connections are closed on accept, not at the timeout');
      let heldOpen = 0;
      for (const c of held) if (!c.socket.destroyed) heldOpen++;
      assert.is(heldOpen, 4, 'the first four are still held');
      held[0]!.socket.destroy(); // one leaves: a normal request fits
      await held[0]!.closed;
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(await fetchStatus(path), { ok: true, traceClients: [] });
      const answers = await Promise.all(held.slice(1).map((c) => c.closed));
      for (const a of answers) assert.match(a, /^HTTP\/1\.1 408/, 'a half-sent request is answered 408 at the timeout');
    },
    { maxConnections: 4, requestTimeoutMs: 1500 },
  );
});

test('a half-sent request and a silent socket are closed after the request timeout; the server goes on', async () => {
  await withServer(
    fakeApi(),
    async (path) => {
      const started = Date.now();
      const half = rawClient(path, HALF_SENT);
      const silent = rawClient(path, '');
      const text = await half.closed;
      const waited = Date.now() - started;
      assert.match(text, /^HTTP\/1\.1 408 Request Timeout/);
      assert.match(text, /did not arrive complete in time/);
      assert.ok(waited >= 250 && waited < 2000, `closed after ${waited} ms`);
      await silent.closed;
      assert.ok(Date.now() - started < 2000, 'a socket that never sends is closed too');
      assert.equal(await fetchStatus(path), { ok: true, traceClients: [] });
    },
    { requestTimeoutMs: 300 },
  );
});

test('an idle keep-alive socket is closed after the keep-alive timeout', async () => {
  await withServer(fakeApi(), async (path) => {
    const c = rawClient(path, 'GET /status HTTP/1.1\r\nhost: agent\r\n\r\n');
    const started = Date.now();
    const text = await c.closed;
    assert.match(text, /^HTTP\/1\.1 200/);
    assert.ok(Date.now() - started < 3000, `idle socket held ${Date.now() - started} ms`);
  });
});

test('the ninth trace client is answered 503; one leaving makes room', async () => {
  const fake = fakeApi();
  await withServer(fake, async (path) => {
    const streams = [];
    for (let i = 0; i < 8; i++) streams.push(streamTrace(path, '', { onJourney: () => {}, onEnd: () => {} }));
    while (fake.sends.length < 8) await new Promise((r) => setTimeout(r, 10));
    const refused = await traceEnd(path, '');
    assert.match(refused?.message ?? '', /HTTP 503\): 8 trace clients are attached already/);
    streams[0].close();
    while (fake.stopped < 1) await new Promise((r) => setTimeout(r, 10));
    const ninth = streamTrace(path, '', { onJourney: () => {}, onEnd: () => {} });
    while (fake.sends.length < 9) await new Promise((r) => setTimeout(r, 10));
    for (const s of [...streams, ninth]) s.close();
  });
});

test('a client that stops reading: output queued per client stays under the bound, drops are counted and reported', async () => {
  const fake = fakeApi();
  const maxBufferedBytes = 64 * 1024;
  await withServer(
    fake,
    async (path) => {
      let journeys = 0;
      let dropped = 0;
      const stream = streamTrace(path, '', { onJourney: () => journeys++, onDropped: (n) => (dropped += n), onEnd: () => {} });
      while (fake.sends.length < 1) await new Promise((r) => setTimeout(r, 10));
      stream.pause();
      // 20 MB of journeys offered while the client reads nothing (the engine's loop calls send synchronously).
      const send = fake.sends[0];
      const offered = 100_000;
      for (let i = 0; i < offered; i++) {
        send(JOURNEY);
        if (i % 1000 === 0) await new Promise((r) => setImmediate(r));
      }
      const held = (await fetchStatus(path)) as { traceClients: { queuedBytes: number; droppedJourneys: number; sentJourneys: number }[] };
      assert.is(held.traceClients.length, 1);
      const [client] = held.traceClients;
      assert.ok(client.queuedBytes >= maxBufferedBytes && client.queuedBytes < maxBufferedBytes + 1024, `queued ${client.queuedBytes} bytes`);
      assert.is(client.sentJourneys + client.droppedJourneys, offered);
      stream.resume();
      const deadline = Date.now() + 30_000;
      while (journeys + dropped < offered && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      stream.close();
      assert.ok(dropped > 0, 'journeys were dropped');
      assert.is(journeys + dropped, offered, `every journey delivered or reported dropped (${journeys} + ${dropped})`);
      // What reached the client before the drops began is about the bound plus the socket's kernel buffers.
      assert.ok(journeys * (JSON.stringify(JOURNEY).length + 1) < maxBufferedBytes + 4 * 1024 * 1024, `${journeys} journeys got through`);
    },
    { maxBufferedBytes },
  );
});

test('streamTrace never throws on a malformed line or a cut stream: it ends with the reason', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vxtun-api-'));
  const path = join(dir, 'bad.sock');
  let reply = '';
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    if (reply === 'cut') {
      res.write('{"timeUs":1');
      setTimeout(() => res.destroy(), 20);
    } else {
      res.end(reply);
    }
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  try {
    reply = `${JSON.stringify(JOURNEY)}\nnot json at all\n`;
    assert.match((await traceEnd(path, ''))?.message ?? '', /unreadable trace line: not json at all/);
    reply = '42\n';
    assert.match((await traceEnd(path, ''))?.message ?? '', /unreadable trace line: 42/);
    reply = 'cut';
    assert.match((await traceEnd(path, ''))?.message ?? '', /broke off the trace/);
    reply = '';
    assert.is(await traceEnd(path, ''), undefined, 'a clean end is no error');
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('fetchStatus rejects an unreadable body instead of throwing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vxtun-api-'));
  const path = join(dir, 'bad.sock');
  const server = createServer((_req, res) => res.end('{"half'));
  await new Promise<void>((resolve) => server.listen(path, resolve));
  try {
    await fetchStatus(path).then(
      () => assert.unreachable('should reject'),
      (err: Error) => assert.match(err.message, /unreadable status/),
    );
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
