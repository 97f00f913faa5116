// The agent answers `vxtun status` on a Unix socket: plain HTTP, one JSON document. A socket file (not a TCP port)
// because status is local and root-only, and because namespaces of one host share the filesystem but not ports.
import { mkdirSync, rmSync } from 'node:fs';
import { type Server, createServer, request } from 'node:http';
import { dirname } from 'node:path';

export const STATUS_DIR = '/run/vxtun';

export function defaultStatusSocket(publicIp: string): string {
  return `${STATUS_DIR}/agent-${publicIp}.sock`;
}

export async function serveStatus(path: string, status: () => unknown): Promise<Server> {
  mkdirSync(dirname(path), { recursive: true });
  rmSync(path, { force: true }); // a socket left by a killed agent
  const server = createServer((req, res) => {
    if (req.url !== '/status') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(status()));
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(path, resolve));
  server.unref();
  return server;
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
    req.on('error', (err: NodeJS.ErrnoException) => {
      reject(
        err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
          ? new Error(`no agent is listening on ${path}: is "vxtun agent" running?`)
          : err,
      );
    });
    req.end();
  });
}
