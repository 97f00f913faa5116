import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { foldChecksum, incrementalUpdate, internetChecksum, onesComplementSum, pseudoHeaderSum } from '../../src/wire/checksum';
import { hex } from './fixtures';

// Deterministic PRNG so a failure reproduces (mulberry32).
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to ddf2', () => {
  const data = hex('0001f203f4f5f6f7');
  assert.is(onesComplementSum(data, 0, 8), 0x2ddf0);
  assert.is(foldChecksum(onesComplementSum(data, 0, 8)), ~0xddf2 & 0xffff);
  assert.is(internetChecksum(data, 0, 8), 0x220d);
});

test('an odd trailing byte is padded with zero on the right', () => {
  assert.is(onesComplementSum(hex('0102ab'), 0, 3), 0x0102 + 0xab00);
  assert.is(internetChecksum(hex('ab'), 0, 1), ~0xab00 & 0xffff);
});

test('a real IPv4 header checks to zero, and recomputes to its stored checksum', () => {
  const header = hex('45000024286a40004001146d7f0000017f000001');
  assert.is(internetChecksum(header, 0, 20), 0);
  const zeroed = Buffer.from(header);
  zeroed.writeUInt16BE(0, 10);
  assert.is(internetChecksum(zeroed, 0, 20), 0x146d);
});

test('initial carries a partial sum across discontiguous ranges', () => {
  const data = hex('45000024286a40004001146d7f0000017f000001');
  const split = onesComplementSum(data, 7, 20, onesComplementSum(data, 0, 7)); // split at an odd offset is wrong...
  const whole = onesComplementSum(data, 0, 20);
  assert.is.not(foldChecksum(split), foldChecksum(whole)); // ...because word alignment matters
  assert.is(foldChecksum(onesComplementSum(data, 8, 20, onesComplementSum(data, 0, 8))), foldChecksum(whole));
});

test('sums of large buffers stay exact (no 32-bit truncation)', () => {
  const big = Buffer.alloc(200_000, 0xff);
  const sum = onesComplementSum(big, 0, big.length, 0xffffffff);
  assert.is(sum, 100_000 * 0xffff + 0xffffffff);
  assert.is(foldChecksum(sum), 0); // all-ones data folds to 0xffff, complement 0
  const mixed = Buffer.alloc(131_072);
  for (let i = 0; i < mixed.length; i++) mixed[i] = (i * 7) & 0xff;
  let reference = 0;
  for (let i = 0; i < mixed.length; i += 2) {
    reference += mixed.readUInt16BE(i);
    reference = (reference & 0xffff) + (reference >>> 16);
  }
  assert.is(internetChecksum(mixed, 0, mixed.length), ~reference & 0xffff);
});

test('pseudoHeaderSum adds the address halves, protocol and length', () => {
  assert.is(pseudoHeaderSum(0xc0000201, 0xc0000202, 17, 58), 0xc000 + 0x0201 + 0xc000 + 0x0202 + 17 + 58);
});

test('incrementalUpdate: RFC 1624 section 4 example gives 0x0000 where equation 2 gives 0xFFFF', () => {
  assert.is(incrementalUpdate(0xdd2f, 0x5555, 0x3285), 0x0000);
});

test('incrementalUpdate equals a full recomputation over many random headers', () => {
  const next = random(1624);
  const header = Buffer.alloc(20);
  for (let round = 0; round < 20_000; round++) {
    for (let i = 0; i < 20; i++) header[i] = Math.floor(next() * 256);
    header.writeUInt16BE(0, 10);
    const before = internetChecksum(header, 0, 20);
    header.writeUInt16BE(before, 10);
    let wordAt = 2 * Math.floor(next() * 10);
    if (wordAt === 10) wordAt = 8;
    const oldWord = header.readUInt16BE(wordAt);
    // Every fourth round, pick the new word that makes the recomputed checksum exactly 0x0000 (the corner case).
    let newWord = Math.floor(next() * 0x10000);
    if (round % 4 === 0) {
      header.writeUInt16BE(0, wordAt);
      // ~(sum of the other words): adding it makes the folded sum 0xFFFF, so the checksum becomes 0x0000.
      newWord = foldChecksum(onesComplementSum(header, 0, 20) - before);
    }
    header.writeUInt16BE(newWord, wordAt);
    header.writeUInt16BE(0, 10);
    const full = internetChecksum(header, 0, 20);
    const incremental = incrementalUpdate(before, oldWord, newWord);
    if (incremental !== full) {
      assert.unreachable(`round ${round}: word at ${wordAt} ${oldWord.toString(16)} -> ${newWord.toString(16)}: ${incremental.toString(16)} != ${full.toString(16)}`);
    }
    if (round % 4 === 0 && full !== 0x0000) {
      assert.unreachable(`round ${round}: corner case not constructed (full ${full.toString(16)})`);
    }
  }
});

test.run();
