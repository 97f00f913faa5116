// One agent per node. A node is a network namespace (the lab runs several on one host, sharing /run), so the lock is
// an abstract Unix socket ("\0vxtun-agent"): its name lives in the network namespace, not the filesystem, and the
// kernel releases it when the holder dies, SIGKILL included; no stale lock file to judge. The holder answers each
// connection with its pid, so a refused agent can name the one in its way.
import { type Server, connect, createServer } from 'node:net';

export const DEFAULT_NODE_LOCK = 'vxtun-agent';

/** Another agent holds this node. `holderPid` is undefined when it did not say (it was exiting, or is foreign). */
export class NodeLockedError extends Error {
  constructor(readonly holderPid: number | undefined) {
    super(
      `another vxtun agent${holderPid === undefined ? '' : ` (pid ${holderPid})`} runs on this node (network namespace); stop it first`,
    );
    this.name = 'NodeLockedError';
  }
}

/** How long to wait for the holder's pid; and how often to retry when the holder is just going away. */
const ASK_TIMEOUT_MS = 1000;
const LISTEN_ATTEMPTS = 5;

function listen(server: Server, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError).listen(address, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** Connects to the holder and reads its `{"pid":N}` line; undefined when nobody answers (the holder is gone). */
function askHolder(address: string): Promise<{ answered: boolean; pid?: number }> {
  return new Promise((resolve) => {
    let text = '';
    const socket = connect(address);
    const done = (answer: { answered: boolean; pid?: number }): void => {
      socket.destroy();
      resolve(answer);
    };
    socket.setTimeout(ASK_TIMEOUT_MS, () => done({ answered: true }));
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      text += chunk;
      if (text.length > 256) done({ answered: true });
    });
    socket.on('end', () => {
      try {
        const pid = (JSON.parse(text) as { pid?: unknown }).pid;
        done({ answered: true, pid: typeof pid === 'number' ? pid : undefined });
      } catch {
        done({ answered: true });
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => done({ answered: err.code !== 'ECONNREFUSED' && err.code !== 'ENOENT' }));
  });
}

export class NodeLock {
  private constructor(private readonly server: Server) {}

  /**
   * Takes this network namespace's agent lock `name` (an abstract socket name, without the leading NUL).
   * Throws NodeLockedError when another live process holds it; other errors (EACCES...) as they come.
   */
  static async acquire(name = DEFAULT_NODE_LOCK): Promise<NodeLock> {
    const address = `\0${name}`;
    for (let attempt = 1; ; attempt++) {
      const server = createServer((socket) => {
        socket.on('error', () => {});
        socket.end(`${JSON.stringify({ pid: process.pid })}\n`);
      });
      try {
        await listen(server, address);
        server.on('error', () => {}); // an accepted connection's failure is no reason to fail the agent
        server.unref();
        return new NodeLock(server);
      } catch (err) {
        server.close();
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      }
      const holder = await askHolder(address);
      // Nobody answered: the holder died between our bind and our connect; the name is free again in a moment.
      if (holder.answered || attempt >= LISTEN_ATTEMPTS) throw new NodeLockedError(holder.pid);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Gives the node up (also done by the kernel when the process ends). */
  release(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
