import { describe, expect, it } from 'vitest';
import { heapFixture } from './heap-child.js';

describe('the HTTP middleware, the bytes a kept record retains', () => {
  it('keeps a scoped key as one flat string: a record with a scope function costs what one with the global scope does', () => {
    // First requests through Fastify's plugin by inject, a UUID key each, a scope of 7 characters.
    const global = heapFixture('http-record-heap.ts', 5_000, 'global');
    const user = heapFixture('http-record-heap.ts', 5_000, 'user');
    expect(global.records).toBe(10_000);
    expect(user.records).toBe(10_000);
    // Measured: 384-406 B global, 380-407 B scoped. Before the key was joined, the scoped key was
    // the template's tree of four cons strings over its parts (the header's string among them),
    // kept whole by the store: 496-538 B a record.
    expect(user.perRecord).toBeLessThan(460);
    expect(user.perRecord - global.perRecord).toBeLessThan(40);
  }, 120_000);
});
