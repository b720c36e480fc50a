import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { ClaimResult, IdempotencyStore, StoredOutcome } from '../src/index.js';

/** A store under test, and a way to let its time pass. */
export interface ContractTarget {
  readonly store: IdempotencyStore;
  /** Lets at least `ms` of the store's time pass. */
  elapse(ms: number): Promise<void>;
  /** A lease short enough to wait out in a test. */
  readonly lease: number;
}

const value = (v: unknown): StoredOutcome => ({ kind: 'value', value: v });

function claimed(result: ClaimResult): string {
  if (result.status !== 'claimed') throw new Error(`expected claimed, got ${result.status}`);
  return result.token;
}

/** The behaviour every IdempotencyStore must have. Run against the memory store and Redis. */
export function storeContract(name: string, setup: () => ContractTarget): void {
  describe(`${name}: the IdempotencyStore contract`, () => {
    const key = () => `k-${randomUUID()}`;

    it('claims a new key with a fencing token; a second claim finds it in progress', async () => {
      const { store, lease } = setup();
      const k = key();
      const first = await store.claim(k, 'fp', lease);
      expect(first).toMatchObject({ status: 'claimed', takeover: false, token: expect.any(String) });
      const second = await store.claim(k, 'fp', lease);
      expect(second.status).toBe('inProgress');
      if (second.status === 'inProgress') {
        expect(second.retryAfterMs).toBeGreaterThan(0);
        expect(second.retryAfterMs).toBeLessThanOrEqual(lease);
      }
    });

    it('completes with the owner token; later claims replay the record, its identity fixed at claim time', async () => {
      const { store, lease } = setup();
      const k = key();
      const token = claimed(await store.claim(k, 'fp-1', lease));
      const result = { id: 7, tags: ['a', 'b'], nested: { ok: true, none: null }, raw: Buffer.from([0, 1, 255]) };
      expect(await store.complete(k, token, value(result), 60_000)).toBe(true);

      const replay = await store.claim(k, 'fp-1', lease);
      if (replay.status !== 'completed') throw new Error(`expected completed, got ${replay.status}`);
      const { record } = replay;
      expect(record).toMatchObject({ status: 'completed', key: k, fingerprint: 'fp-1' });
      expect(record.outcome).toEqual({ kind: 'value', value: result });
      expect(record.createdAt).toBeLessThanOrEqual(record.completedAt);
      expect(record.expiresAt - record.completedAt).toBe(60_000);
      // Every replay is a fresh copy: mutating one cannot change the next.
      (record.outcome as { value: { id: number } }).value.id = 99;
      const again = await store.claim(k, 'fp-1', lease);
      expect(again.status === 'completed' && again.record.outcome).toEqual({ kind: 'value', value: result });
    });

    it('replays a function that returned nothing as undefined', async () => {
      const { store, lease } = setup();
      const k = key();
      await store.complete(k, claimed(await store.claim(k, 'fp', lease)), value(undefined), 60_000);
      const replay = await store.claim(k, 'fp', lease);
      expect(replay.status === 'completed' && replay.record.outcome).toEqual({ kind: 'value', value: undefined });
    });

    it('stores an aborted run: a later claim finds it completed, aborted, until ttlMs', async () => {
      const { store, lease } = setup();
      const k = key();
      expect(await store.complete(k, claimed(await store.claim(k, 'fp', lease)), { kind: 'aborted' }, 60_000)).toBe(
        true,
      );
      const replay = await store.claim(k, 'fp', lease);
      expect(replay.status === 'completed' && replay.record.outcome).toEqual({ kind: 'aborted' });
    });

    it('stores an HTTP response: status, headers and every byte of the body', async () => {
      const { store, lease } = setup();
      const k = key();
      const body = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      const response: StoredOutcome = {
        kind: 'response',
        status: 201,
        headers: { 'content-type': 'application/octet-stream', vary: ['accept', 'origin'] },
        body,
      };
      await store.complete(k, claimed(await store.claim(k, 'fp', lease)), response, 60_000);
      const replay = await store.claim(k, 'fp', lease);
      if (replay.status !== 'completed') throw new Error(`expected completed, got ${replay.status}`);
      expect(replay.record.outcome).toEqual(response);
      expect(Buffer.compare(Buffer.from((replay.record.outcome as { body: Uint8Array }).body), body)).toBe(0);
    });

    it('reports a mismatch for another fingerprint, while in progress and once completed', async () => {
      const { store, lease } = setup();
      const k = key();
      const token = claimed(await store.claim(k, 'fp-a', lease));
      expect(await store.claim(k, 'fp-b', lease)).toEqual({ status: 'mismatch' });
      await store.complete(k, token, value(1), 60_000);
      expect(await store.claim(k, 'fp-b', lease)).toEqual({ status: 'mismatch' });
    });

    it('refuses complete and release with a token that does not own the key', async () => {
      const { store, lease } = setup();
      const k = key();
      const token = claimed(await store.claim(k, 'fp', lease));
      expect(await store.complete(k, `${token}x`, value('forged'), 60_000)).toBe(false);
      expect(await store.release(k, `${token}x`)).toBe(false);
      expect(await store.complete(key(), token, value('elsewhere'), 60_000)).toBe(false);
      expect((await store.claim(k, 'fp', lease)).status).toBe('inProgress');
      expect(await store.complete(k, token, value('real'), 60_000)).toBe(true);
      // Completed: a completion resent by its own run is acknowledged again but changes nothing; a release cannot touch it.
      expect(await store.complete(k, token, value('again'), 60_000)).toBe(true);
      expect(await store.release(k, token)).toBe(false);
      const replay = await store.claim(k, 'fp', lease);
      expect(replay.status === 'completed' && replay.record.outcome).toEqual(value('real'));
    });

    it('release frees the key: the next claim gets a new token', async () => {
      const { store, lease } = setup();
      const k = key();
      const first = claimed(await store.claim(k, 'fp', lease));
      expect(await store.release(k, first)).toBe(true);
      const second = await store.claim(k, 'other-fp', lease);
      expect(second).toMatchObject({ status: 'claimed', takeover: false });
      expect(claimed(second)).not.toBe(first);
    });

    it('after the lease runs out the next claim takes over; the stale owner can neither complete nor release', async () => {
      const { store, elapse, lease } = setup();
      const k = key();
      const stale = claimed(await store.claim(k, 'fp', lease));
      await elapse(lease + 20);
      const next = await store.claim(k, 'fp', lease);
      expect(next).toMatchObject({ status: 'claimed', takeover: true });
      const fresh = claimed(next);
      expect(fresh).not.toBe(stale);
      expect((await store.claim(k, 'fp', lease)).status).toBe('inProgress');

      expect(await store.complete(k, stale, value('late'), 60_000)).toBe(false);
      expect(await store.release(k, stale)).toBe(false);
      expect(await store.complete(k, fresh, value('new owner'), 60_000)).toBe(true);
      const replay = await store.claim(k, 'fp', lease);
      if (replay.status !== 'completed') throw new Error(`expected completed, got ${replay.status}`);
      expect(replay.record.outcome).toEqual(value('new owner'));
      // The record's identity is the first claim's: created before the lease that ran out.
      expect(replay.record.completedAt - replay.record.createdAt).toBeGreaterThanOrEqual(lease);
    });

    it('a takeover needs the same fingerprint: another payload is still a mismatch', async () => {
      const { store, elapse, lease } = setup();
      const k = key();
      claimed(await store.claim(k, 'fp', lease));
      await elapse(lease + 20);
      expect(await store.claim(k, 'other', lease)).toEqual({ status: 'mismatch' });
    });

    it('an owner whose lease ran out but was not taken over still completes: the token decides, not the clock', async () => {
      const { store, elapse, lease } = setup();
      const k = key();
      const token = claimed(await store.claim(k, 'fp', lease));
      await elapse(lease + 20);
      expect(await store.complete(k, token, value('slow but sole'), 60_000)).toBe(true);
    });

    it('never keeps an in-progress record without a deadline: an abandoned claim is gone after two leases', async () => {
      const { store, elapse, lease } = setup();
      const k = key();
      const token = claimed(await store.claim(k, 'fp', lease));
      await elapse(2 * lease + 20);
      expect(await store.claim(k, 'other-fp', lease)).toMatchObject({ status: 'claimed', takeover: false });
      expect(await store.complete(k, token, value('too late'), 60_000)).toBe(false);
    });

    it('completed records expire at their TTL', async () => {
      const { store, elapse, lease } = setup();
      const k = key();
      const ttl = lease;
      await store.complete(k, claimed(await store.claim(k, 'fp', lease)), value('v'), ttl);
      expect((await store.claim(k, 'fp', lease)).status).toBe('completed');
      await elapse(ttl + 20);
      expect(await store.claim(k, 'fp', lease)).toMatchObject({ status: 'claimed', takeover: false });
    });

    it('rejects a value it cannot store with E_IDEMPOTENCY_VALUE, changing nothing', async () => {
      const { store, lease } = setup();
      const k = key();
      const token = claimed(await store.claim(k, 'fp', lease));
      await expect(store.complete(k, token, value({ at: new Date(0) }), 60_000)).rejects.toMatchObject({
        code: 'E_IDEMPOTENCY_VALUE',
        path: 'result.at',
        message: expect.stringContaining('Date'),
      });
      await expect(
        store.complete(k, token, { kind: 'response', status: 200, headers: {}, body: 'text' as never }, 60_000),
      ).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_VALUE', path: 'response.body' });
      expect((await store.claim(k, 'fp', lease)).status).toBe('inProgress');
      expect(await store.complete(k, token, value({ at: '1970-01-01T00:00:00.000Z' }), 60_000)).toBe(true);
    });

    it('200 concurrent claims of one key: exactly one wins', async () => {
      const { store, lease } = setup();
      const k = key();
      const results = await Promise.all(Array.from({ length: 200 }, () => store.claim(k, 'fp', lease)));
      expect(results.filter((r) => r.status === 'claimed')).toHaveLength(1);
      expect(results.filter((r) => r.status === 'inProgress')).toHaveLength(199);
    });
  });
}
