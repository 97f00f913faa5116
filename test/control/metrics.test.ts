import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type AddressInfo, connect } from 'node:net';
import type { AgentStatus } from '../../src/control/agent';
import { agentStatus as status } from '../support/agent-status';
import { consoleLogger } from '../../src/control/log';
import { formatMetrics, serveMetrics } from '../../src/control/metrics';

const test = suite('control: metrics');

test('refused leases and a config mismatch are gauges, 0 when all is well', () => {
  const healthy = formatMetrics(status({}));
  assert.match(healthy, /\nvxtun_refused_leases 0\n/);
  assert.match(healthy, /\nvxtun_config_mismatch 0\n/);
  const troubled = formatMetrics(
    status({
      refusedLeases: [{ key: 'k1', reason: 'r' }, { key: 'k2', reason: 'r' }],
      configMismatch: { stored: '(deleted)', differences: ['the network config was deleted from the store'] },
    }),
  );
  assert.match(troubled, /\nvxtun_refused_leases 2\n/);
  assert.match(troubled, /\nvxtun_config_mismatch 1\n/);
});

test('a scrape whose status throws is answered 500 with the reason and logged; the next scrape works', async () => {
  const lines: string[] = [];
  let fail = true;
  const current = (): AgentStatus => {
    if (fail) throw new Error('counters unavailable');
    return status({});
  };
  const server = await serveMetrics('127.0.0.1', 0, current, consoleLogger('info', (l) => lines.push(l)));
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const failed = await fetch(`${url}/metrics`);
    assert.is(failed.status, 500);
    assert.match(await failed.text(), /metrics unavailable: counters unavailable/);
    assert.match(lines.join(''), /level=error msg="metrics scrape failed" error="counters unavailable"/);
    assert.is((await fetch(`${url}/metrics`, { method: 'POST' })).status, 405);
    assert.is((await fetch(`${url}/other`)).status, 404);
    fail = false;
    const ok = await fetch(`${url}/metrics`);
    assert.is(ok.status, 200);
    assert.match(await ok.text(), /^vxtun_routes 0$/m);
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

test('the metrics server is bounded: extra connections closed on accept, a half-sent scrape answered 408 at the timeout', async () => {
  const server = await serveMetrics('127.0.0.1', 0, () => status({}), undefined, { maxConnections: 2, requestTimeoutMs: 300 });
  const port = (server.address() as AddressInfo).port;
  const raw = (text: string): Promise<string> =>
    new Promise((resolve) => {
      let got = '';
      const socket = connect(port, '127.0.0.1', () => socket.write(text));
      socket.setEncoding('utf8').on('data', (c) => (got += c));
      socket.on('error', () => {});
      socket.on('close', () => resolve(got));
    });
  try {
    const started = Date.now();
    const held = [raw('GET /metrics HTTP/1.1\r\n'), raw('GET /metrics HTTP/1.1\r\n')];
    while ((await new Promise<number>((r) => server.getConnections((_e, n) => r(n)))) < 2) await new Promise((r) => setTimeout(r, 5));
    assert.is(await raw('GET /metrics HTTP/1.1\r\n\r\n'), '', 'the third connection is closed unanswered');
    for (const text of await Promise.all(held)) assert.match(text, /^HTTP\/1\.1 408/);
    assert.ok(Date.now() - started < 2000);
    const ok = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.is(ok.status, 200);
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

test.run();
