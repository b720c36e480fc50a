import { createBus, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { perTest, reply } from './upstream.js';

const t = perTest();
const long = { timeout: { perTry: 60_000, total: 120_000 } } as const;

async function settle(p: Promise<unknown>): Promise<string> {
  return p.then(
    (v) => (v instanceof Response ? `status ${v.status}` : `value ${String(v)}`),
    (e: { code?: unknown; name?: string }) => `error ${typeof e.code === 'string' ? e.code : e.name}`,
  );
}

describe('rvlast: dispose() attacks', { timeout: 60_000 }, () => {
  it('a response returned before dispose(): its slow body still reads to the end', async () => {
    let finish: (() => void) | undefined;
    const s = await t.server((_, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('head-');
      finish = () => res.end('tail');
    });
    const http = t.client({ ...long, clock: new ManualClock(0) });
    const res = await http(`${s.url}/x`);
    http.dispose();
    const text = res.text();
    finish?.();
    expect(await settle(text.then((x) => x))).toBe('value head-tail');
  });

  it('dispose() from a breaker.success listener (response in hand, fetch() not yet returned)', async () => {
    let finish: (() => void) | undefined;
    const s = await t.server((_, res) => {
      res.writeHead(200);
      res.write('head-');
      finish = () => res.end('tail');
    });
    const bus = createBus();
    const http = t.client({ ...long, clock: new ManualClock(0), bus });
    bus.on('breaker.success', () => http.dispose());
    const got = await settle(
      http(`${s.url}/x`).then(async (res) => {
        const text = res.text();
        finish?.();
        return `${res.status}:${await text}`;
      }),
    );
    // Either the call is not yet answered (E_DISPOSED) or it is, and its body reads on: never a 200 whose body is cut.
    expect(['error E_DISPOSED', 'value 200:head-tail']).toContain(got);
  });

  it('dispose() from a retry.attempt listener: the call ends E_DISPOSED and is not sent again', async () => {
    const s = await t.server(reply(503));
    const bus = createBus();
    const http = t.client({
      ...long,
      clock: new ManualClock(0),
      bus,
      breaker: false,
      retry: { maxAttempts: 3, jitter: 'none' },
    });
    bus.on('retry.attempt', () => http.dispose());
    expect(await settle(http(`${s.url}/x`))).toBe('error E_DISPOSED');
    expect(s.seen).toHaveLength(1);
  });

  it('2,000 calls sharing one caller signal: no MaxListenersExceededWarning', async () => {
    const s = await t.server(() => {}); // holds every request
    const http = t.client({ ...long, clock: new ManualClock(0), breaker: false, retry: false, concurrency: false });
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    try {
      const shared = new AbortController();
      const calls = Array.from({ length: 2_000 }, (_, i) => settle(http(`${s.url}/${i}`, { signal: shared.signal })));
      await new Promise((r) => setTimeout(r, 500));
      http.dispose();
      const out = await Promise.all(calls);
      expect(new Set(out)).toEqual(new Set(['error E_DISPOSED']));
      await new Promise((r) => setImmediate(r));
      expect(warnings).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('caller signal already aborted, dispose() in the same tick: the caller abort wins', async () => {
    const s = await t.server(reply(200));
    const http = t.client({ ...long, clock: new ManualClock(0) });
    const ac = new AbortController();
    ac.abort();
    const call = settle(http(`${s.url}/x`, { signal: ac.signal }));
    http.dispose();
    http.dispose(); // twice: no throw
    expect(await call).toBe('error AbortError');
  });
});
