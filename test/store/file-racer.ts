// A child process for file.test.ts: races another copy of itself on one FileStore directory.
// argv: DIR ROUNDS NAME (exactly two racers). Prints one JSON line: the ifAbsent keys it won and how many increments it made.

import { FileStore } from '../../src/store/file';

async function main(): Promise<void> {
  const [dir, roundsText, name] = process.argv.slice(2);
  const rounds = Number(roundsText);
  const store = new FileStore(dir);
  // Start together with the other racer: say ready, wait for the parent's "go".
  process.stdout.write('ready\n');
  await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
  process.stdin.pause();
  const won: number[] = [];
  let increments = 0;
  let conflicts = 0;
  try {
    for (let round = 0; round < rounds; round++) {
      // Lockstep: start a round only when both racers finished the previous one, so every create is contended.
      while (Number((await store.get('/race/counter'))?.value ?? '0') < 2 * round) await new Promise(setImmediate);
      if (await store.put(`/race/create/${round}`, name, { ifAbsent: true })) won.push(round);
      // Increment the shared counter by compare-and-swap until our write lands.
      for (;;) {
        const current = await store.get('/race/counter');
        const next = String(Number(current?.value ?? '0') + 1);
        if (await store.put('/race/counter', next, { ifModRevision: current?.modRevision ?? 0 })) break;
        conflicts++;
      }
      increments++;
    }
  } finally {
    await store.close();
  }
  process.stdout.write(`${JSON.stringify({ name, won, increments, conflicts })}\n`);
}

// Only as a program: a test runner that loads every file under test/ must not wait for a "go".
if (require.main === module) {
  main().catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  });
}
