import { createBus, DisposedError, type HoldfastEvent, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { type BreakerRegistryOptions, breakerRegistry } from '../src/index.js';
import { fail, failTimes, succeed } from './support.js';

function registry(options: BreakerRegistryOptions = {}) {
  const clock = new ManualClock(0);
  const bus = createBus();
  const events: HoldfastEvent[] = [];
  bus.on('*', (e) => events.push(e));
  return { clock, events, hosts: breakerRegistry({ name: 'hosts', clock, bus, ...options }) };
}

describe('breakerRegistry()', () => {
  it('makes one breaker per key on first use, named for the key, with shared defaults', async () => {
    const { hosts, events } = registry({ defaults: { minimumCalls: 2, openFor: 5_000 } });
    expect(hosts.size).toBe(0);
    const a = hosts.get('a.example');
    expect(hosts.get('a.example')).toBe(a);
    await failTimes({ execute: (fn) => hosts.execute('a.example', fn) }, 2);
    await expect(hosts.execute('b.example', succeed)).resolves.toBe('ok');
    expect(hosts.get('a.example').state).toBe('open');
    expect(hosts.get('b.example').state).toBe('closed');
    expect(events.find((e) => e.type === 'breaker.open')).toMatchObject({ source: 'hosts:a.example', retryAt: 5_000 });
  });

  it('lays per-key overrides over the defaults, merging nested options field by field', async () => {
    const { hosts } = registry({
      defaults: { minimumCalls: 50, halfOpen: { maxProbes: 3, successesToClose: 2 } },
      overrides: { 'fragile.example': { minimumCalls: 1, halfOpen: { successesToClose: 5 } } },
    });
    await hosts.execute('fragile.example', fail()).catch(() => undefined);
    await hosts.execute('sturdy.example', fail()).catch(() => undefined);
    expect(hosts.get('fragile.example').state).toBe('open');
    expect(hosts.get('sturdy.example').state).toBe('closed');

    const byFunction = registry({
      overrides: (key) => (key.startsWith('db-') ? { consecutiveFailures: 1 } : undefined),
    });
    await byFunction.hosts.execute('db-1', fail()).catch(() => undefined);
    expect(byFunction.hosts.get('db-1').state).toBe('open');
  });

  it('evicts the least recently used breaker past maxKeys', async () => {
    const { hosts, clock } = registry({ maxKeys: 3 });
    for (const key of ['a', 'b', 'c']) {
      await hosts.execute(key, succeed);
      await clock.advance(2_000);
    }
    await hosts.execute('a', succeed); // a is now the most recent
    await hosts.execute('d', succeed);
    expect(['a', 'b', 'c', 'd'].filter((k) => hosts.has(k))).toEqual(['a', 'c', 'd']);
  });

  it('evicts breakers idle for idleTtl, but keeps open, isolated and disabled ones', async () => {
    const { hosts, clock } = registry({ idleTtl: 60_000, defaults: { minimumCalls: 1, openFor: 300_000 } });
    await hosts.execute('idle', succeed);
    await hosts.execute('open', fail()).catch(() => undefined);
    hosts.get('isolated').isolate();
    await clock.advance(30_000);
    await hosts.execute('busy', succeed);
    await clock.advance(40_000);
    await hosts.execute('busy', succeed);
    expect(['idle', 'open', 'isolated', 'busy'].filter((k) => hosts.has(k))).toEqual(['open', 'isolated', 'busy']);
    await clock.advance(300_000);
    hosts.prune();
    expect(['open', 'isolated', 'busy'].filter((k) => hosts.has(k))).toEqual(['isolated']);
  });

  it('passes over an open breaker whose openFor passed, for room; drops it once idle for idleTtl', async () => {
    const { hosts, clock } = registry({ maxKeys: 2, idleTtl: 60_000, defaults: { minimumCalls: 1, openFor: 1_000 } });
    await hosts.execute('sick', fail()).catch(() => undefined);
    await clock.advance(2_000);
    // Due to probe, not probed yet: a fresh closed breaker would let every call through, not one.
    for (const key of ['a', 'b', 'c']) await hosts.execute(key, succeed);
    expect(hosts.has('sick')).toBe(true);
    await clock.advance(60_000);
    hosts.prune();
    expect(hosts.has('sick')).toBe(false);
  });

  it('keeps memory bounded over a stream of distinct keys', async () => {
    const { hosts, clock } = registry({ maxKeys: 500, idleTtl: 1_000 });
    let largest = 0;
    for (let i = 0; i < 20_000; i++) {
      await hosts.execute(`tenant-${i}`, succeed);
      if (i % 1_000 === 0) await clock.advance(100);
      largest = Math.max(largest, hosts.size);
    }
    expect(largest).toBe(500);
    expect(hosts.has('tenant-19999')).toBe(true);
    expect(hosts.has('tenant-0')).toBe(false);
  });

  it('snapshots every breaker by key, restores them lazily, and refuses use after dispose()', async () => {
    const { hosts, clock } = registry({ defaults: { minimumCalls: 1 } });
    await hosts.execute('down', fail()).catch(() => undefined);
    await hosts.execute('up', succeed);
    const snap = hosts.snapshot();
    expect(snap).toMatchObject({
      name: 'hosts',
      size: 2,
      breakers: { down: { state: 'open' }, up: { state: 'closed' } },
    });
    expect(JSON.parse(JSON.stringify(snap))).toEqual(snap);
    hosts.dispose();
    expect(() => hosts.get('up')).toThrow(DisposedError);
    await expect(hosts.execute('up', succeed)).rejects.toBeInstanceOf(DisposedError);

    const restarted = breakerRegistry({ clock, restore: JSON.parse(JSON.stringify(snap)) });
    expect(restarted.size).toBe(0);
    expect(restarted.get('down').state).toBe('open');
    expect(restarted.get('up').state).toBe('closed');
  });

  it('shows a key that is a URL without its password, and restores it from that snapshot by the key as given', async () => {
    const dsn = 'postgres://app:hunter2@db1.internal:5432/orders';
    const { hosts, clock, events } = registry({
      defaults: { minimumCalls: 1 },
      overrides: () => ({ openFor: 60_000 }),
    });
    await hosts.execute(dsn, fail()).catch(() => undefined);
    await hosts.execute('https://api.example/v1?api_key=SEKRET', succeed);
    const snap = JSON.parse(JSON.stringify(hosts.snapshot()));
    expect(Object.keys(snap.breakers)).toEqual([
      'postgres://***@db1.internal:5432/orders',
      'https://api.example/v1?api_key=***',
    ]);
    expect(JSON.stringify({ snap, events })).not.toMatch(/hunter2|SEKRET/);
    expect(events.find((e) => e.type === 'breaker.open')?.source).toBe('hosts:postgres://***@db1.internal:5432/orders');
    hosts.dispose();

    // The next process restores from that snapshot: the DSN it uses (with its password) finds it.
    const restarted = breakerRegistry({ clock, restore: snap });
    expect(restarted.get(dsn).state).toBe('open');
    expect(restarted.get('https://api.example/v1?api_key=SEKRET').state).toBe('closed');
    // A snapshot an older version took, with the key as given, is read the same way.
    const older = { ...snap, breakers: { [dsn]: snap.breakers['postgres://***@db1.internal:5432/orders'] } };
    expect(breakerRegistry({ clock, restore: older }).get(dsn).state).toBe('open');
    // An override that is refused names the key as shown.
    const lazy = breakerRegistry({ overrides: () => ({ openFor: -5 }) });
    expect(() => lazy.get(dsn)).toThrow(/overrides\("postgres:\/\/\*\*\*@db1\.internal:5432\/orders"\)\.openFor/);
    expect(() => lazy.get(dsn)).not.toThrow(/hunter2/);
  });

  it('names the option path in its errors, for defaults and overrides alike', () => {
    expect(() => breakerRegistry({ maxKeys: 0 })).toThrow(/breakerRegistry: maxKeys .*\(got 0\)/);
    expect(() => breakerRegistry({ defaults: { halfOpen: { maxProbes: -1 } } })).toThrow(
      /defaults\.halfOpen\.maxProbes/,
    );
    expect(() => breakerRegistry({ overrides: { 'a.example': { window: { buckets: 0 } } } })).toThrow(
      /overrides\.a\.example\.window\.buckets/,
    );
    const lazy = breakerRegistry({ overrides: () => ({ openFor: -5 }) });
    expect(() => lazy.get('x')).toThrow(/overrides\("x"\)\.openFor/);
  });

  it('a breaker evicted while its calls run emits nothing when they settle: its name, dropped by exporters, stays dropped', async () => {
    const clock = new ManualClock(0);
    const bus = createBus();
    const hosts = breakerRegistry({ name: 'hosts', clock, bus, maxKeys: 10, policies: false });
    const late: HoldfastEvent[] = [];
    const settle: (() => void)[] = [];
    const running: Promise<unknown>[] = [];
    for (let i = 0; i < 200; i++) {
      // One call a key still running when the key after next evicts its breaker.
      const key = `tenant-${i}`;
      running.push(
        hosts
          .execute(
            key,
            () =>
              new Promise<string>((resolve, reject) =>
                settle.push(() => (i % 2 ? resolve('ok') : reject(new Error('ECONNRESET')))),
              ),
          )
          .catch(() => undefined),
      );
    }
    expect(hosts.size).toBe(10);
    const off = bus.on('*', (e) => late.push(e));
    for (const done of settle) done();
    await Promise.all(running);
    off();
    const evicted = new Set(Array.from({ length: 190 }, (_, i) => `hosts:tenant-${i}`));
    expect(late.filter((e) => evicted.has(e.source))).toEqual([]);
    // The breakers still held count and report their calls as before.
    expect(late.filter((e) => e.type === 'breaker.success' || e.type === 'breaker.failure')).toHaveLength(10);
  });
});
