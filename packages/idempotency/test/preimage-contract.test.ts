import { describe, expect, it } from 'vitest';
import { fingerprintOf } from '../src/http/fingerprint.js';
import { type KeptRecord, memoryStore, NOW, type StoreNow } from '../src/memory-store.js';
import { expressFramework } from './http-support/apps.js';

// The in-process calls live under a versioned Symbol.for key so that a copy of this module with
// another contract for them is not trusted with them. Up to v5, a record those calls hand out
// holds the request's fingerprint (SHA-256) and an engine compares it with its own: a copy of the
// package from before preimages (another version in the same process, given this store) reads
// the v5 key. A record kept as its preimage must not be handed to it as v5.

const V5 = Symbol.for('holdfast.idempotency.memoryStore.now.v5');

interface V5Calls {
  claim(key: string, fingerprint: string, leaseMs: number): { status: string; record?: KeptRecord };
  completed?(key: string): KeptRecord | undefined;
}

describe('the in-process calls of a store that keeps preimages', () => {
  it('are not offered under the v5 key, whose records hold fingerprints', async () => {
    const store = memoryStore();
    const server = await expressFramework.start({ store });
    try {
      const sent = await fetch(`${server.url}/orders`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': 'k1' },
        body: '{"a":1}',
      });
      expect(sent.status).toBe(201);
    } finally {
      await server.close();
    }
    const fingerprint = fingerprintOf('POST', '/orders', 'application/json', undefined, Buffer.from('{"a":1}'), []);
    // What a v5 engine does with its retry: claims with the fingerprint, then compares the record's.
    const v5 = (store as unknown as Record<symbol, V5Calls | undefined>)[V5];
    if (v5 !== undefined) {
      const found = v5.claim('http:*:k1', fingerprint, 1_000);
      expect(found.status).toBe('completed');
      expect(found.record?.fingerprint).toBe(fingerprint);
      expect(v5.completed?.('http:*:k1')?.fingerprint).toBe(fingerprint);
    }
    // The public method answers the v5 engine's retry (what it falls back to) with the fingerprint.
    const found = await store.claim('http:*:k1', fingerprint, 1_000);
    expect(found.status).toBe('completed');
    if (found.status === 'completed') expect(found.record.fingerprint).toBe(fingerprint);
    // And this copy's calls are found under this copy's key.
    expect((store as unknown as Record<symbol, StoreNow | undefined>)[NOW]?.claimPreimage).toBeTypeOf('function');
  });
});
