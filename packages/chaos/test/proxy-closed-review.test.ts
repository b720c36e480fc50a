/**
 * Review by an outside user: after close(), add() threw DisposedError but kill(), restore(),
 * accept() and the rest did nothing and said nothing, so a drill step or a test driving a proxy
 * it had already closed "passed" without injecting anything. Every action after close() now
 * throws (or, when it returns a promise, rejects with) DisposedError, as a disposed breaker does.
 */
import { connect } from 'node:net';
import { createBus, DisposedError, type HoldfastEvent } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { listen, proxyTo } from './support/review.js';

function dial(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

describe('faultProxy review: every action after close()', () => {
  it('the synchronous ones throw DisposedError (E_DISPOSED), as add() does', async () => {
    const p = await proxyTo(await listen(() => {}), { name: 'pg-proxy' });
    await p.close();
    const actions: [string, () => unknown][] = [
      ['add', () => p.add({ type: 'latency', latency: 5 })],
      ['freeze', () => p.freeze()],
      ['remove', () => p.remove('latency-1')],
      ['clear', () => p.clear()],
      ['resetAll', () => p.resetAll()],
    ];
    for (const [name, action] of actions) {
      let thrown: unknown;
      try {
        action();
      } catch (error) {
        thrown = error;
      }
      expect([name, thrown]).toEqual([name, expect.any(DisposedError)]);
      expect((thrown as DisposedError).code).toBe('E_DISPOSED');
      expect((thrown as DisposedError).message).toBe('pg-proxy: used after dispose()');
    }
  });

  it('the ones that return a promise reject with DisposedError, and never listen again', async () => {
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('*', (e) => events.push(e));
    const p = await proxyTo(await listen(() => {}), { bus });
    await p.close();
    const before = events.length;
    for (const [name, action] of [
      ['kill', () => p.kill()],
      ['restore', () => p.restore()],
      ['refuse', () => p.refuse()],
      ['accept', () => p.accept()],
    ] as const) {
      const outcome = await action().then(
        () => 'resolved',
        (error: unknown) => error,
      );
      expect([name, outcome]).toEqual([name, expect.any(DisposedError)]);
    }
    expect(events.length).toBe(before);
    expect(p.snapshot().listening).toBe(false);
    expect(await dial(p.port)).toBe('ECONNREFUSED');
  });

  it('what only reads, close() again, and a toxic handle from before still answer', async () => {
    const p = await proxyTo(await listen(() => {}));
    const lag = p.add({ type: 'latency', latency: 5 });
    await p.close();
    expect(() => lag.remove()).not.toThrow();
    expect(p.snapshot().toxics).toEqual([]);
    expect(p.connections()).toEqual([]);
    await expect(p.close()).resolves.toBeUndefined();
  });
});
