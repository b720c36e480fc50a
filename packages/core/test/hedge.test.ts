import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type CallContext,
  createBus,
  createPolicyRegistry,
  HoldfastConfigError,
  type HoldfastEvent,
  hedge,
  ManualClock,
} from '../src/index.js';

/** Three upstreams on a simulated clock: `latencies[i]` ms each; counts the aborts each sees. */
function upstreams(clock: ManualClock, latencies: readonly number[]) {
  const aborted = latencies.map(() => 0);
  const served = latencies.map(() => 0);
  const call = (at: number, ctx: CallContext) =>
    new Promise<number>((resolve, reject) => {
      const timer = clock.setTimeout(() => {
        served[at] = (served[at] as number) + 1;
        resolve(at);
      }, latencies[at] as number);
      ctx.signal.addEventListener('abort', () => {
        clock.clearTimeout(timer);
        aborted[at] = (aborted[at] as number) + 1;
        reject(ctx.signal.reason);
      });
    });
  return { call, aborted, served };
}

function p99(latencies: number[]): number {
  const sorted = [...latencies].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length * 0.99)] as number;
}

/** Sends `n` calls, 10 at a time; the i-th call's first attempt goes to upstream i % 3. */
async function drive(clock: ManualClock, n: number, run: (i: number) => Promise<unknown>): Promise<number[]> {
  const latencies: number[] = [];
  for (let i = 0; i < n; i += 10) {
    const batch = Array.from({ length: 10 }, (_, j) => {
      const start = clock.now();
      return run(i + j).then(() => latencies.push(clock.now() - start));
    });
    await clock.runAll();
    await Promise.all(batch);
  }
  return latencies;
}

describe('hedge()', () => {
  it('after dispose(), a call already running sends no more hedges and ends on its own attempt', async () => {
    const clock = new ManualClock();
    const h = hedge({ delay: 10, maxHedges: 2, safe: true, budget: false, clock, policies: false });
    let attempts = 0;
    const call = h.execute(
      (ctx) =>
        new Promise<number>((resolve, reject) => {
          const n = ++attempts;
          const timer = clock.setTimeout(() => resolve(n), 100);
          ctx.signal.addEventListener('abort', () => {
            clock.clearTimeout(timer);
            reject(ctx.signal.reason);
          });
        }),
    );
    await clock.advance(5);
    h.dispose();
    await clock.runAll();
    expect(await call).toBe(1);
    expect(attempts).toBe(1);
    expect(h.snapshot().hedges).toBe(0);
    await expect(h.execute(async () => 1)).rejects.toThrow(/after dispose/);
  });

  it('one upstream of three 10x slower: p99 drops to near the fast ones, within budget, losers aborted', async () => {
    const clock = new ManualClock();
    const fast = 5;
    const slow = 50;
    const plain = upstreams(clock, [fast, fast, slow]);
    const unhedged = await drive(clock, 300, (i) =>
      plain.call(i % 3, { signal: new AbortController().signal, attempt: 1 }),
    );

    const ups = upstreams(clock, [fast, fast, slow]);
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('hedge.attempt', (e) => events.push(e));
    const h = hedge({
      delay: { percentile: 0.5, initial: 10, minSamples: 10 },
      safe: true,
      budget: { ratio: 0.5, minPerSecond: 0, window: 60_000 },
      clock,
      bus,
      policies: false,
    });
    // A failover inside would pick the next endpoint by attempt: attempt 2 goes to the next one.
    const hedged = await drive(clock, 300, (i) => h.execute((ctx) => ups.call((i + ctx.attempt - 1) % 3, ctx)));
    const s = h.snapshot();

    expect(p99(unhedged)).toBe(slow);
    // Fast upstream latency, plus the hedge delay it waited for the slow one.
    expect(p99(hedged)).toBeLessThanOrEqual(fast + 10);
    expect(s.calls).toBe(300);
    expect(s.hedges).toBeLessThanOrEqual(0.5 * s.calls);
    expect(s.hedges).toBeGreaterThanOrEqual(100); // every call whose primary was the slow upstream
    expect(events).toHaveLength(s.hedges);
    // Every hedge won against a slow primary, which was aborted through its signal.
    expect(s.hedgeWins).toBe(100);
    expect(s.losersAborted).toBe(100);
    expect(ups.aborted).toEqual([0, 0, 100]);
    expect(ups.served[2]).toBe(0);
    expect(s.delay).toBe(fast);
  });

  it('the budget caps hedges to its share of traffic, and says when it refuses', async () => {
    const clock = new ManualClock();
    const ups = upstreams(clock, [50, 50, 50]);
    const bus = createBus();
    const refused: HoldfastEvent[] = [];
    bus.on('hedge.budgetExhausted', (e) => refused.push(e));
    const h = hedge({ delay: 10, safe: true, budget: { ratio: 0.1, minPerSecond: 0 }, clock, bus, policies: false });
    await drive(clock, 200, (i) => h.execute((ctx) => ups.call((i + ctx.attempt - 1) % 3, ctx)));
    const s = h.snapshot();
    expect(s.hedges).toBeLessThanOrEqual(20);
    expect(s.hedges).toBeGreaterThanOrEqual(15);
    expect(s.refused).toBe(200 - s.hedges);
    expect(refused).toHaveLength(s.refused);
  });

  it('does not hedge a call not marked safe; execute(fn, { safe: true }) marks one', async () => {
    const clock = new ManualClock();
    const h = hedge({ delay: 1, budget: false, clock, policies: false });
    let sent = 0;
    const slowCall = () =>
      new Promise((resolve) => {
        sent++;
        clock.setTimeout(() => resolve('ok'), 10);
      });
    const a = h.execute(slowCall);
    await clock.runAll();
    await a;
    expect(sent).toBe(1);
    const b = h.execute(slowCall, { safe: true });
    await clock.runAll();
    await b;
    expect(sent).toBe(3);
  });

  it('a failed attempt sends the next at once; all failing rejects with the last error', async () => {
    const h = hedge({ delay: 60_000, maxHedges: 2, safe: true, budget: false, policies: false });
    const attempts: number[] = [];
    const error = await h
      .execute(({ attempt }) => {
        attempts.push(attempt);
        return Promise.reject(new Error(`fail ${attempt}`));
      })
      .catch((e: unknown) => e);
    expect(attempts).toEqual([1, 2, 3]);
    expect((error as Error).message).toBe('fail 3');
    expect(await h.execute(({ attempt }) => (attempt === 1 ? Promise.reject(new Error('x')) : 'second'))).toBe(
      'second',
    );
  });

  it("the caller's abort stops every attempt and no hedge is sent after it", async () => {
    const clock = new ManualClock();
    const h = hedge({ delay: 10, maxHedges: 3, safe: true, budget: false, clock, policies: false });
    const caller = new AbortController();
    const signals: AbortSignal[] = [];
    const pending = h
      .execute(
        (ctx) =>
          new Promise((_, reject) => {
            signals.push(ctx.signal);
            ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason));
          }),
        { signal: caller.signal },
      )
      .catch((e: unknown) => e);
    await clock.advance(15);
    expect(signals).toHaveLength(2);
    caller.abort(new Error('user left'));
    expect(((await pending) as Error).message).toBe('user left');
    await clock.advance(100);
    expect(signals).toHaveLength(2);
    expect(signals.every((s) => s.aborted)).toBe(true);
  });

  it('lists itself in the registry; bad options are refused', () => {
    const policies = createPolicyRegistry();
    const h = hedge({ delay: 5, policies, name: 'reads' });
    expect(policies.snapshots('hedge')).toEqual([
      { kind: 'hedge', name: 'reads', snapshot: expect.objectContaining({ calls: 0, hedges: 0, delay: 5 }) },
    ]);
    h.dispose();
    expect(policies.size).toBe(0);
    expect(() => hedge({ delay: -1 })).toThrow(HoldfastConfigError);
    expect(() => hedge({ delay: { percentile: 1.5 } })).toThrow(/delay/);
    expect(() => hedge({ delay: 5, budget: { ratio: -1 } })).toThrow(/budget.ratio/);
  });
});

describe('hedge() against real HTTP servers', () => {
  const servers: Server[] = [];
  afterAll(() => {
    for (const s of servers) s.close();
  });

  async function upstream(delay: number) {
    const stats = { requests: 0, completed: 0, clientGone: 0 };
    const server = createServer((req, res) => {
      stats.requests++;
      const timer = setTimeout(() => {
        stats.completed++;
        res.end('ok');
      }, delay);
      res.on('close', () => {
        if (!res.writableFinished) {
          clearTimeout(timer);
          stats.clientGone++;
        }
      });
      void req;
    });
    servers.push(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, stats };
  }

  it('the losing request is cancelled on the wire: the slow server sees its client go away', async () => {
    const slow = await upstream(2_000);
    const fast = await upstream(1);
    const h = hedge({ delay: 20, safe: true, budget: false, policies: false });
    const targets = [slow.url, fast.url];
    const bodies = await Promise.all(
      Array.from({ length: 20 }, () =>
        h.execute(async ({ signal, attempt }) => (await fetch(targets[attempt - 1] as string, { signal })).text()),
      ),
    );
    expect(bodies.every((b) => b === 'ok')).toBe(true);
    await expect.poll(() => slow.stats.clientGone, { timeout: 2_000 }).toBe(20);
    expect(slow.stats).toEqual({ requests: 20, completed: 0, clientGone: 20 });
    expect(fast.stats.completed).toBe(20);
    expect(h.snapshot()).toMatchObject({ calls: 20, hedges: 20, hedgeWins: 20, losersAborted: 20 });
  });
});

describe('hedge onFailure', () => {
  it('false: a failed attempt sends no other at once, and fails the call; true (the default) sends one', async () => {
    const calls: number[] = [];
    for (const onFailure of [false, true]) {
      const h = hedge({ delay: 10_000, safe: true, onFailure, budget: false, bus: createBus(), policies: false });
      let n = 0;
      const outcome = await h
        .execute(async () => {
          n++;
          if (n === 1) throw new Error('first failed');
          return 'second';
        })
        .then(String, (e: Error) => e.message);
      calls.push(n);
      expect(outcome).toBe(onFailure ? 'second' : 'first failed');
      h.dispose();
    }
    expect(calls).toEqual([1, 2]);
  });
});
