import { describe, expect, it } from 'vitest';
import { heapFixture } from './heap-child.js';

describe('review5: memoryStore, a short body kept as a string', () => {
  it('keeps no second copy of it once replayed: 20,000 records replayed once grow by under 32 bytes a record', () => {
    const out = heapFixture('replay-heap.ts', 20_000);
    expect(out.records).toBe(20_000);
    // Measured: 3 B a record with this change; 415-425 B without it (the answer to its replays,
    // cached per record, with a Buffer of the body).
    expect(out.perRecord).toBeLessThan(32);
  }, 90_000);
});
