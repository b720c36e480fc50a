import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBus, type EventOf, type EventType } from '@holdfast/core';
import { retryBudget } from '@holdfast/retry';
import { afterEach, describe, expect, it } from 'vitest';
import { failover } from '../src/index.js';

/** A local HTTP upstream that can be killed, hung and brought back on the same port. */
class Upstream {
  hits = 0;
  hung = false;
  server: Server;
  port = 0;

  constructor(readonly name: string) {
    this.server = this.#make();
  }

  #make(): Server {
    return createServer((req, res) => {
      if (req.url === '/health') return res.end('ok');
      this.hits++;
      if (this.hung) return; // accepts the request, never answers
      res.setHeader('content-type', 'text/plain');
      res.end(this.name);
    });
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    this.server.listen(this.port, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  /** Stops listening and cuts every open connection, as a crashed process would. */
  async kill(): Promise<void> {
    const closed = once(this.server, 'close');
    this.server.close();
    this.server.closeAllConnections();
    await closed;
  }

  async revive(): Promise<void> {
    this.server = this.#make();
    await this.start();
  }
}

const started: Upstream[] = [];
afterEach(async () => {
  for (const u of started.splice(0)) if (u.server.listening) await u.kill();
});

async function upstreams(...names: string[]): Promise<Upstream[]> {
  const list = await Promise.all(names.map((n) => new Upstream(n).start()));
  started.push(...list);
  // The first fetch() of a worker loads undici: on a loaded machine the first calls then took
  // over 250 ms, and a load starting cold timed out its first burst (158 calls of test 2 failed
  // at its per-try timeout, all in its first 500 ms). Each upstream answers once before the load.
  await Promise.all(list.map((u) => fetch(`${u.url}/health`).then((res) => res.text())));
  return list;
}

/**
 * Sends `rate` requests a second for `seconds` through `send`, each on its own (open loop),
 * and runs `script` at the given offsets in ms. Resolves with every outcome once all settled.
 */
async function load(
  rate: number,
  seconds: number,
  send: () => Promise<string>,
  script: Record<number, () => Promise<void> | void>,
) {
  /** `at`: sent, ms after the start; `end`: settled, on performance.now()'s scale. */
  const outcomes: { at: number; end: number; body?: string; error?: unknown }[] = [];
  const pending: Promise<void>[] = [];
  const start = performance.now();
  const total = rate * seconds;
  const steps = Object.entries(script)
    .map(([at, run]) => ({ at: Number(at), run }))
    .sort((a, b) => a.at - b.at);
  for (let i = 0; i < total; i++) {
    const due = (i * 1000) / rate;
    const wait = due - (performance.now() - start);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    while (steps[0] !== undefined && steps[0].at <= due) await steps.shift()?.run();
    const at = performance.now() - start;
    pending.push(
      send().then(
        (body) => void outcomes.push({ at, end: performance.now(), body }),
        (error: unknown) => void outcomes.push({ at, end: performance.now(), error }),
      ),
    );
  }
  await Promise.all(pending);
  return outcomes.sort((a, b) => a.at - b.at);
}

function recorder() {
  const bus = createBus();
  const events: EventOf<EventType>[] = [];
  bus.on('*', (e) => events.push(e));
  return {
    bus,
    events,
    types: () => events.map((e) => `${e.type}:${'endpoint' in e ? e.endpoint : 'to' in e ? e.to : ''}`),
  };
}

/**
 * A kill fails every call in flight on the endpoint at once, and each is retried. The default budget
 * lets through a burst of 20% of the last second's calls (retryBudget's ttl, as documented): enough
 * while calls take a few ms, not once a loaded machine stretches these in-process calls past 200 ms
 * (active-passive: all calls are in flight on the primary) or 600 ms (one of three). Then the calls
 * past the budget fail (5 to 25 of them, 'retry.budgetExhausted'). The same ratio over 10 s covers
 * the burst; these tests are of failover, not of the budget's window.
 */
const roomyBudget = () => retryBudget({ ratio: 0.2, minPerSecond: 5, ttl: 10_000 });

const get = (signal: AbortSignal, url: string) =>
  fetch(url, { signal }).then((res) => {
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return res.text();
  });

describe('against real HTTP upstreams on 127.0.0.1', () => {
  it('endpoint killed: 3 upstreams at 200 req/s for 10 s, one killed in the middle, 0 failed requests', async () => {
    const [a, b, c] = await upstreams('a', 'b', 'c');
    if (!a || !b || !c) throw new Error('no upstreams');
    const { bus, types } = recorder();
    const set = failover({
      bus,
      endpoints: [a.url, b.url, c.url],
      retry: { idempotent: true, maxAttempts: 3, budget: roomyBudget() },
    });
    let hitsAtKill = 0;
    const outcomes = await load(200, 10, () => set.execute((e, { signal }) => get(signal, `${e.target}/work`)), {
      5000: async () => {
        await b.kill();
        hitsAtKill = b.hits;
      },
    });
    set.dispose();
    expect(outcomes).toHaveLength(2_000);
    expect(outcomes.filter((o) => o.error !== undefined)).toEqual([]);
    // After the kill nothing reached b, and a and c shared its traffic.
    expect(b.hits).toBe(hitsAtKill);
    const late = outcomes.filter((o) => o.at > 6_000).map((o) => o.body);
    expect(new Set(late)).toEqual(new Set(['a', 'c']));
    expect(types()).toContain(`failover.eject:${b.url}`);
  }, 30_000);

  it('endpoint hung: a per-try timeout moves its calls on, 0 failed requests, and it is ejected', async () => {
    const [a, b, c] = await upstreams('a', 'b', 'c');
    if (!a || !b || !c) throw new Error('no upstreams');
    const { bus, types } = recorder();
    const set = failover({
      bus,
      endpoints: [a.url, b.url, c.url],
      timeout: 250,
      retry: { idempotent: true, maxAttempts: 3 },
    });
    const outcomes = await load(100, 4, () => set.execute((e, { signal }) => get(signal, `${e.target}/work`)), {
      1000: () => {
        c.hung = true;
      },
    });
    set.dispose();
    expect(outcomes.filter((o) => o.error !== undefined)).toEqual([]);
    expect(types()).toContain(`failover.eject:${c.url}`);
    // Once ejected the hung upstream gets no more calls: the rest of the run went to a and b.
    const late = outcomes.filter((o) => o.at > 2_500).map((o) => o.body);
    expect(new Set(late)).toEqual(new Set(['a', 'b']));
  }, 30_000);

  it('primary killed and brought back: traffic moves to the standby, then fails back after the hold-down', async () => {
    const [primary, standby] = await upstreams('primary', 'standby');
    if (!primary || !standby) throw new Error('no upstreams');
    const { bus, events } = recorder();
    const set = failover({
      bus,
      mode: 'active-passive',
      holdDown: 1_000,
      retry: { idempotent: true, budget: roomyBudget() },
      endpoints: [
        { name: 'primary', target: primary.url, priority: 0 },
        { name: 'standby', target: standby.url, priority: 1 },
      ],
      health: {
        interval: 100,
        // The upstreams answer from this process: on a loaded machine a check can take a few
        // hundred ms, and with unhealthyAfter: 1 one slow check is a failover (a kill is refused at once).
        timeout: 2_000,
        healthyAfter: 2,
        unhealthyAfter: 1,
        check: (e, signal) => get(signal, `${e.target}/health`),
      },
    });
    let killedAt = Number.POSITIVE_INFINITY;
    const outcomes = await load(100, 5, () => set.execute((e, { signal }) => get(signal, `${e.target}/work`)), {
      1000: () => {
        killedAt = performance.now();
        return primary.kill();
      },
      2000: () => primary.revive(),
    });
    set.dispose();
    expect(outcomes).toHaveLength(500);
    expect(outcomes.filter((o) => o.error !== undefined)).toEqual([]);
    const switches = events.filter((e): e is EventOf<'failover.switch'> => e.type === 'failover.switch');
    expect(switches.map((e) => [e.from, e.to, e.reason])).toEqual([
      ['primary', 'standby', 'failover'],
      ['standby', 'primary', 'failback'],
    ]);
    // Failback waited for the hold-down after the primary turned healthy again.
    const healthy = events
      .filter((e): e is EventOf<'health.change'> => e.type === 'health.change')
      .find((e) => e.endpoint === 'primary' && e.healthy);
    expect((switches[1]?.time ?? 0) - (healthy?.time ?? 0)).toBeGreaterThanOrEqual(1_000);
    // Before the kill the primary served everything. (Not the first 90 sent: on a loaded machine
    // calls take over 100 ms, and those still in flight at the kill are retried on the standby.)
    const beforeKill = outcomes.filter((o) => o.end < killedAt).map((o) => o.body);
    expect(beforeKill.length).toBeGreaterThanOrEqual(50);
    expect(beforeKill.every((b) => b === 'primary')).toBe(true);
    const bodies = outcomes.map((o) => o.body);
    expect(bodies).toContain('standby');
    expect(bodies.slice(-30).every((b) => b === 'primary')).toBe(true);
  }, 30_000);
});
