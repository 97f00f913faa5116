import { connect } from 'node:net';
import { serveAgentApi, fetchStatus } from '../src/control/status-server';
(async () => {
  const path = '/tmp/g2dbg.sock';
  const server = await serveAgentApi(path, { status: () => ({ ok: 1 }), trace: () => () => {} }, { maxConnections: 2, requestTimeoutMs: 1500 });
  const mk = (t: string) => { const s = connect(path); s.on('error', (e) => console.log('err', e.message)); s.on('close', () => console.log('close', Date.now() % 100000)); if (t) s.write(t); return s; };
  const a = mk('GET /status HTTP/1.1\r\n'); const b = mk('GET /status HTTP/1.1\r\n');
  await new Promise((r) => setTimeout(r, 100));
  console.log('extra', Date.now() % 100000); mk('GET / HTTP/1.1\r\n');
  await new Promise((r) => setTimeout(r, 100));
  a.destroy(); await new Promise((r) => setTimeout(r, 50));
  try { console.log(await fetchStatus(path)); } catch (e) { console.log('fetch', e); }
  await new Promise((r) => setTimeout(r, 2500)); server.close();
})();
