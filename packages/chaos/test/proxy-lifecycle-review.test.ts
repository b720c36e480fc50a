/**
 * Review: add() after close(), a drop given two budgets, the port taken, a bus listener that
 * throws on every toxic event.
 */

import { connect } from 'node:net';
import { createBus, DisposedError, HoldfastConfigError, type HoldfastEvent } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { faultProxy } from '../src/index.js';
import { client, listen, proxies, proxyTo, tick } from './support/review.js';

describe('faultProxy review: lifecycle', () => {
  it('add() after close() throws and announces nothing: no toxic shows on for good', async () => {
    const port = await listen(() => {});
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('chaos.toxic', (e) => events.push(e));
    const p = await faultProxy({ target: { port }, bus });
    await p.close();
    expect(() => p.add({ type: 'latency', latency: 5 })).toThrow(DisposedError);
    expect(events).toEqual([]);
    expect(p.snapshot().toxics).toEqual([]);
  });

  it('a drop given both bytes and chunks is refused, naming both', async () => {
    const port = await listen(() => {});
    const p = await proxyTo(port);
    expect(() => p.add({ type: 'drop', bytes: 5, chunks: 2 })).toThrow(HoldfastConfigError);
    expect(() => p.add({ type: 'drop', bytes: 5, chunks: 2 })).toThrow(/bytes.*chunks|chunks.*bytes/);
    expect(p.snapshot().toxics).toEqual([]);
  });

  it('the port taken: the error says which proxy and which port, and nothing is left open', async () => {
    const port = await listen(() => {});
    const p = await proxyTo(port);
    const error = await faultProxy({ target: { port }, port: p.port, name: 'redis-proxy' }).then(
      (q) => {
        proxies.push(q);
        return q;
      },
      (e: Error) => e,
    );
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toContain('redis-proxy');
    expect((error as Error).message).toContain(String(p.port));
    expect((error as NodeJS.ErrnoException).code).toBe('EADDRINUSE');
  });

  it('a listener that throws on every chaos.toxic: a drop still spends itself and the next reply arrives', async () => {
    let n = 0;
    const port = await listen((s) => s.on('data', () => s.write(`reply-${++n};`)));
    const bus = createBus({ onListenerError: () => {} });
    bus.on('chaos.toxic', () => {
      throw new Error('listener broke');
    });
    const p = await proxyTo(port, { bus });
    const c = client(p);
    let got = '';
    c.on('data', (b) => (got += b));
    p.add({ type: 'drop', chunks: 1 });
    c.write('a');
    while (p.snapshot().toxics.length > 0) await tick(5);
    c.write('b');
    while (!got.includes('reply-2;')) await tick(5);
    expect(got).toBe('reply-2;');
  });
});

describe('faultProxy review: listening again raced by close() or kill()', () => {
  async function refused(port: number): Promise<string> {
    const s = connect({ port, host: '127.0.0.1' });
    return new Promise((resolve) => {
      s.once('connect', () => {
        s.destroy();
        resolve('connected');
      });
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    });
  }

  it('close() while restore() is listening again: closed, not left listening (which would hold the process open)', async () => {
    const port = await listen((s) => s.end('hi'));
    const p = await proxyTo(port);
    await p.kill();
    await Promise.all([p.restore(), p.close()]);
    expect(p.snapshot().listening).toBe(false);
    expect(await refused(p.port)).toBe('ECONNREFUSED');
  });

  it('kill() while accept() is listening again: refused at the end, as the last call said', async () => {
    const port = await listen((s) => s.end('hi'));
    const p = await proxyTo(port);
    await p.refuse();
    await Promise.all([p.accept(), p.kill()]);
    expect(p.snapshot().listening).toBe(false);
    expect(await refused(p.port)).toBe('ECONNREFUSED');
    await p.restore();
    expect(await refused(p.port)).toBe('connected');
  });

  it('two restore() at once: both resolve, listening once', async () => {
    const port = await listen((s) => s.end('hi'));
    const p = await proxyTo(port);
    await p.kill();
    await Promise.all([p.restore(), p.restore(), p.accept()]);
    expect(p.snapshot().listening).toBe(true);
    expect(await refused(p.port)).toBe('connected');
  });
});
