import { describe, expect, it } from 'vitest';
import { heapFixture } from './heap-child.js';

describe('memoryStore, the bytes a completed record retains', () => {
  it("keeps a short JSON response's record in one object with its strings: under 480 bytes a record", () => {
    const out = heapFixture('record-heap.ts', 20_000);
    expect(out.records).toBe(40_000);
    // Measured: 443-453 B a record with its outcome folded into it, a number for its token and
    // the headers object shared; 534-551 B before (an outcome object, a token string, a headers
    // object per record). The young generation's collections copy each record they find alive,
    // and the old generation's mark it: its bytes and objects are a first request's cost past
    // its hash.
    expect(out.perRecord).toBeLessThan(480);
  }, 90_000);
});
