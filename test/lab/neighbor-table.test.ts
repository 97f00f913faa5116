import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { neighborLimitsFor } from '../../src/lab/neighbor-table';

test('limits hold the mesh without garbage collection, in the order the kernel expects', () => {
  const limits = neighborLimitsFor(50 * 51);
  assert.ok(limits.gcThresh1 >= 50 * 51, 'thresh1 holds every entry of a 50-node full mesh');
  assert.ok(limits.gcThresh1 < limits.gcThresh2 && limits.gcThresh2 < limits.gcThresh3);
  assert.ok(neighborLimitsFor(3 * 4).gcThresh1 <= 512, 'a small lab fits the default limits (nothing to raise)');
});

test.run();
