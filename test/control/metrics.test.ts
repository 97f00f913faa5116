import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { AddressInfo } from 'node:net';
import type { AgentStatus } from '../../src/control/agent';
import { consoleLogger } from '../../src/control/log';
import { serveMetrics } from '../../src/control/metrics';

const test = suite('control: metrics server');

test('a scrape whose status throws is answered 500 with the reason and logged; the next scrape works', async () => {
  const lines: string[] = [];
  let fail = true;
  const status = (): AgentStatus => {
    if (fail) throw new Error('counters unavailable');
    return { routes: [], storeConnected: true } as unknown as AgentStatus;
  };
  const server = await serveMetrics('127.0.0.1', 0, status, consoleLogger('info', (l) => lines.push(l)));
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

test.run();
