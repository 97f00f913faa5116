// A store opened inside a lab namespace, used from outside it. The lab's etcd listens on the hub's underlay address,
// which our own (root namespace) process cannot open; so a small relay process runs in the hub namespace, opens the
// store there with openStore(), and serves get/put/delete/list as JSON lines on its stdin/stdout. No listener, no
// address, nothing at all is made in the root namespace, and the store client is the agents' own (EtcdStore).
//
// This file is both ends: RelayedStore (in our process) and, when run as a program, the relay.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { openStore } from '../store/open';
import { StoreError, type KeyValue, type ListResult, type PutOptions, type Store, type Watch } from '../store/store';
import { commandArgv } from './shell';

/** The compiled relay; this file sits two levels below the package root in both src/ and dist/. */
export const RELAY_PATH = join(__dirname, '..', '..', 'dist', 'lab', 'store-relay.js');

type Request =
  | { id: number; op: 'get'; key: string }
  | { id: number; op: 'put'; key: string; value: string; options: PutOptions }
  | { id: number; op: 'delete'; key: string }
  | { id: number; op: 'list'; prefix: string };

type Response =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; message: string; code: StoreError['code'] | null };

type RequestBody = Request extends infer R ? (R extends Request ? Omit<R, 'id'> : never) : never;

/** The Store seam, minus watches, over a relay process running in `netns`. close() ends the relay. */
export class RelayedStore implements Store {
  readonly url: string;
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  private readonly exited: Promise<void>;
  private nextId = 1;
  private stderr = '';
  private closed = false;

  constructor(
    readonly netns: string,
    url: string,
    relayPath = RELAY_PATH,
  ) {
    this.url = url;
    const [file, argv] = commandArgv(process.execPath, [relayPath, url], netns);
    this.child = spawn(file, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdin!.on('error', () => undefined); // EPIPE when the relay died; its exit rejects what waits
    this.child.stderr!.on('data', (chunk: Buffer) => (this.stderr = (this.stderr + chunk.toString()).slice(-4000)));
    createInterface({ input: this.child.stdout! }).on('line', (line) => this.answer(line));
    this.exited = new Promise((resolve) => {
      this.child.once('error', (error) => {
        this.stderr += error.message;
        resolve();
      });
      this.child.once('close', () => resolve());
    });
    void this.exited.then(() => {
      const why = `the store relay in namespace ${netns} exited${this.stderr.trim() ? `: ${this.stderr.trim()}` : ''}`;
      for (const waiter of this.pending.values()) waiter.reject(new StoreError(why, 'UNAVAILABLE'));
      this.pending.clear();
    });
  }

  get(key: string): Promise<KeyValue | undefined> {
    return this.request({ op: 'get', key }) as Promise<KeyValue | undefined>;
  }

  put(key: string, value: string, options: PutOptions = {}): Promise<boolean> {
    return this.request({ op: 'put', key, value, options }) as Promise<boolean>;
  }

  delete(key: string): Promise<boolean> {
    return this.request({ op: 'delete', key }) as Promise<boolean>;
  }

  list(prefix: string): Promise<ListResult> {
    return this.request({ op: 'list', prefix }) as Promise<ListResult>;
  }

  watch(): Watch {
    throw new StoreError(`watches are not relayed from namespace ${this.netns}; run the watcher inside it`, 'INVALID');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.child.stdin!.end();
    const killer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(killer);
  }

  private request(body: RequestBody): Promise<unknown> {
    if (this.closed) return Promise.reject(new StoreError(`store ${this.url} (relayed) is closed`, 'INVALID'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.stdin!.write(`${JSON.stringify({ ...body, id })}\n`);
    });
  }

  private answer(line: string): void {
    let response: Response;
    try {
      response = JSON.parse(line) as Response;
    } catch {
      return; // not ours (a stray log line)
    }
    const waiter = this.pending.get(response.id);
    if (waiter === undefined) return;
    this.pending.delete(response.id);
    if (response.ok) waiter.resolve(response.result ?? undefined);
    else waiter.reject(response.code === null ? new Error(response.message) : new StoreError(response.message, response.code));
  }
}

/** The relay program: `node store-relay.js URL`, requests on stdin, one answer per line on stdout. */
async function serve(url: string): Promise<void> {
  const store = openStore(url);
  const inFlight = new Set<Promise<void>>();
  const lines = createInterface({ input: process.stdin });
  const handle = async (request: Request): Promise<Response> => {
    try {
      const result =
        request.op === 'get' ? await store.get(request.key)
          : request.op === 'put' ? await store.put(request.key, request.value, request.options)
            : request.op === 'delete' ? await store.delete(request.key)
              : await store.list(request.prefix);
      return { id: request.id, ok: true, result: result ?? null };
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      return { id: request.id, ok: false, message, code: error instanceof StoreError ? error.code : null };
    }
  };
  lines.on('line', (line) => {
    const work = handle(JSON.parse(line) as Request).then((response) => void process.stdout.write(`${JSON.stringify(response)}\n`));
    inFlight.add(work);
    void work.finally(() => inFlight.delete(work));
  });
  await new Promise<void>((resolve) => lines.once('close', () => resolve()));
  await Promise.all(inFlight);
  await store.close();
  process.exit(0); // a closed gRPC channel may still hold timers
}

if (require.main === module) {
  const url = process.argv[2];
  if (url === undefined) {
    process.stderr.write('usage: store-relay URL\n');
    process.exit(2);
  }
  serve(url).catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
