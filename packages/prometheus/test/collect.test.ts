import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  createBus,
  createPolicyRegistry,
  HoldfastConfigError,
  type HoldfastEvent,
  type JsonValue,
} from '@holdfast/core';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { collect } from '../src/index.js';

const at = 1_700_000_000_000;
const ev = (e: Record<string, unknown>) => ({ source: 'payments', time: at, ...e }) as unknown as HoldfastEvent;

function setup() {
  const bus = createBus();
  const policies = createPolicyRegistry();
  const registry = new Registry();
  const stop = collect({ bus, registry, policies });
  return { bus, policies, registry, stop, scrape: () => registry.metrics() };
}

/** The value of one sample line of the text format, e.g. `holdfast_breaker_state{policy="x",state="open"}`. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('collect()', () => {
  it('counts breaker calls by outcome and buckets their latency in seconds', async () => {
    const s = setup();
    s.bus.emit(ev({ type: 'breaker.success', latency: 40 }));
    s.bus.emit(ev({ type: 'breaker.success', latency: 900 }));
    s.bus.emit(ev({ type: 'breaker.failure', latency: 3000, code: 'ECONNRESET' }));
    s.bus.emit(ev({ type: 'breaker.reject', state: 'open', retryAt: at }));
    const text = await s.scrape();

    expect(text).toContain('# TYPE holdfast_breaker_calls_total counter');
    expect(sample(text, 'holdfast_breaker_calls_total{policy="payments",outcome="success"}')).toBe(2);
    expect(sample(text, 'holdfast_breaker_calls_total{policy="payments",outcome="failure"}')).toBe(1);
    expect(sample(text, 'holdfast_breaker_calls_total{policy="payments",outcome="rejected"}')).toBe(1);
    const bucket = (le: string) =>
      sample(text, `holdfast_breaker_call_duration_seconds_bucket{le="${le}",policy="payments",outcome="success"}`);
    expect(bucket('0.05')).toBe(1);
    expect(bucket('1')).toBe(2);
    expect(sample(text, 'holdfast_breaker_call_duration_seconds_sum{policy="payments",outcome="success"}')).toBeCloseTo(
      0.94,
    );
  });

  it('a call whose wall-clock latency is negative (the clock stepped back during it) is bucketed at 0: the _sum never falls', async () => {
    const s = setup();
    const sum = (text: string) =>
      sample(text, 'holdfast_breaker_call_duration_seconds_sum{policy="payments",outcome="success"}');
    s.bus.emit(ev({ type: 'breaker.success', latency: 40 }));
    const before = sum(await s.scrape()) as number;
    // What a breaker on the real clock emits when NTP steps the clock back an hour mid-call.
    s.bus.emit(ev({ type: 'breaker.success', latency: -3_599_999 }));
    const text = await s.scrape();
    expect(sum(text)).toBeGreaterThanOrEqual(before);
    expect(sample(text, 'holdfast_breaker_call_duration_seconds_count{policy="payments",outcome="success"}')).toBe(2);
    expect(
      sample(text, 'holdfast_breaker_call_duration_seconds_bucket{le="0.001",policy="payments",outcome="success"}'),
    ).toBe(1);
  });

  it('counts retries, their delay, give-ups, budget refusals, timeouts, idempotency and failover events', async () => {
    const s = setup();
    s.bus.emit(ev({ type: 'retry.attempt', source: 'api', attempt: 1, delay: 100, code: 'E_TIMEOUT' }));
    s.bus.emit(ev({ type: 'retry.attempt', source: 'api', attempt: 2, delay: 200, code: 'E_TIMEOUT' }));
    s.bus.emit(ev({ type: 'retry.giveUp', source: 'api', attempts: 3, reason: 'maxAttempts', code: 'E_TIMEOUT' }));
    s.bus.emit(ev({ type: 'retry.budgetExhausted', source: 'api', attempt: 1, code: undefined }));
    s.bus.emit(ev({ type: 'timeout', source: 'api', timeout: 1000, strategy: 'cooperative' }));
    s.bus.emit(ev({ type: 'idempotency.replay', source: 'orders', key: 'k1' }));
    s.bus.emit(ev({ type: 'idempotency.conflict', source: 'orders', key: 'k2' }));
    s.bus.emit(ev({ type: 'failover.switch', source: 'db', from: 'a', to: 'b', reason: 'failover' }));
    s.bus.emit(ev({ type: 'failover.eject', source: 'db', endpoint: 'a', until: at + 30_000, ejections: 1 }));
    const text = await s.scrape();

    expect(sample(text, 'holdfast_retry_attempts_total{policy="api"}')).toBe(2);
    expect(sample(text, 'holdfast_retry_delay_seconds_sum{policy="api"}')).toBeCloseTo(0.3);
    expect(sample(text, 'holdfast_retry_delay_seconds_count{policy="api"}')).toBe(2);
    expect(sample(text, 'holdfast_retry_give_ups_total{policy="api",reason="maxAttempts"}')).toBe(1);
    expect(sample(text, 'holdfast_retry_budget_rejections_total{policy="api"}')).toBe(1);
    expect(sample(text, 'holdfast_timeouts_total{policy="api"}')).toBe(1);
    expect(sample(text, 'holdfast_idempotency_events_total{policy="orders",event="replay"}')).toBe(1);
    expect(sample(text, 'holdfast_idempotency_events_total{policy="orders",event="conflict"}')).toBe(1);
    expect(sample(text, 'holdfast_failover_switches_total{policy="db",reason="failover",to="b"}')).toBe(1);
    expect(sample(text, 'holdfast_failover_ejections_total{policy="db",endpoint="a"}')).toBe(1);
  });

  it('reads breaker state, endpoint health and readiness from snapshots at scrape time', async () => {
    const s = setup();
    const breaker = { state: 'closed', snapshot: (): JsonValue => ({ name: 'payments', state: breaker.state }) };
    const endpoints = [
      { name: 'primary', role: 'active', health: 'healthy', available: true, inFlight: 2 },
      { name: 'replica', role: 'standby', health: 'healthy', available: true, inFlight: 0 },
    ];
    const set = { snapshot: (): JsonValue => ({ name: 'db', endpoints }) };
    s.policies.register('breaker', 'payments', breaker);
    s.policies.register('failover', 'db', set);

    let text = await s.scrape();
    expect(sample(text, 'holdfast_breaker_state{policy="payments",state="closed"}')).toBe(1);
    expect(sample(text, 'holdfast_breaker_state{policy="payments",state="open"}')).toBe(0);
    expect(sample(text, 'holdfast_failover_endpoint_up{policy="db",endpoint="primary"}')).toBe(1);
    expect(sample(text, 'holdfast_failover_endpoint_in_flight{policy="db",endpoint="primary"}')).toBe(2);
    expect(sample(text, 'holdfast_ready')).toBe(1);

    breaker.state = 'open';
    endpoints[0] = { name: 'primary', role: 'standby', health: 'unhealthy', available: false, inFlight: 0 };
    text = await s.scrape();
    expect(sample(text, 'holdfast_breaker_state{policy="payments",state="closed"}')).toBe(0);
    expect(sample(text, 'holdfast_breaker_state{policy="payments",state="open"}')).toBe(1);
    expect(sample(text, 'holdfast_failover_endpoint_up{policy="db",endpoint="primary"}')).toBe(0);
    expect(sample(text, 'holdfast_ready')).toBe(0);
  });

  it('two live copies of one policy name (re-created before the old one was disposed): the newest is reported, not their sum', async () => {
    const s = setup();
    const set = (up: boolean, inFlight: number) => ({
      snapshot: (): JsonValue => ({ name: 'db', endpoints: [{ name: 'primary', available: up, inFlight }] }),
    });
    // Held to the end: the registry holds what it lists weakly.
    const stale = [set(true, 0), { snapshot: () => ({ balance: 5 }) }, { snapshot: () => ({ limit: 37 }) }] as const;
    const live = [set(false, 3), { snapshot: () => ({ balance: 8 }) }, { snapshot: () => ({ limit: 40 }) }] as const;
    for (const [set, budget, limiter] of [stale, live]) {
      s.policies.register('failover', 'db', set);
      s.policies.register('budget', 'api', budget);
      s.policies.register('concurrency', 'search', limiter);
    }
    const text = await s.scrape();
    expect(sample(text, 'holdfast_failover_endpoint_up{policy="db",endpoint="primary"}')).toBe(0);
    expect(sample(text, 'holdfast_failover_endpoint_in_flight{policy="db",endpoint="primary"}')).toBe(3);
    expect(sample(text, 'holdfast_retry_budget_balance{policy="api"}')).toBe(8);
    expect(sample(text, 'holdfast_concurrency_limit{policy="search"}')).toBe(40);
  });

  it('falls back to the last transition event for breakers nobody registered', async () => {
    const s = setup();
    s.bus.emit(ev({ type: 'breaker.open', source: 'search', reason: 'failureRate', failureRate: 0.8, retryAt: at }));
    s.bus.emit(ev({ type: 'breaker.halfOpen', source: 'search' }));
    const text = await s.scrape();
    expect(sample(text, 'holdfast_breaker_state{policy="search",state="halfOpen"}')).toBe(1);
    expect(sample(text, 'holdfast_breaker_state{policy="search",state="open"}')).toBe(0);
    expect(sample(text, 'holdfast_breaker_transitions_total{policy="search",state="open"}')).toBe(1);
  });

  it('serves the text format over HTTP, as Prometheus scrapes it', async () => {
    const s = setup();
    s.bus.emit(ev({ type: 'breaker.success', latency: 12 }));
    const server = createServer(async (_req, res) => {
      res.setHeader('content-type', s.registry.contentType);
      res.end(await s.registry.metrics());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      expect(sample(await res.text(), 'holdfast_breaker_calls_total{policy="payments",outcome="success"}')).toBe(1);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('stops listening and unregisters its metrics when stopped; refuses to register twice', async () => {
    const s = setup();
    expect(() => collect({ bus: s.bus, registry: s.registry })).toThrow(/already has a metric "holdfast_/);
    // The refused second collect() left the first one's metrics in place.
    expect(await s.scrape()).toContain('holdfast_breaker_calls_total');
    s.stop();
    expect(s.bus.wants('breaker.success')).toBe(false);
    expect(await s.scrape()).not.toContain('holdfast_');
    const again = collect({ bus: s.bus, registry: s.registry, prefix: 'svc_' });
    expect(await s.scrape()).toContain('svc_breaker_calls_total');
    again();
  });

  it('a throwing listener beside it never breaks a call, and it still counts', async () => {
    const errors: unknown[] = [];
    const bus = createBus({ onListenerError: (e) => errors.push(e) });
    const registry = new Registry();
    const stop = collect({ bus, registry });
    bus.on('breaker.success', () => {
      throw new Error('boom');
    });
    const call = async () => {
      const value = await Promise.resolve('ok');
      bus.emit(ev({ type: 'breaker.success', latency: 3 }));
      return value;
    };
    await expect(call()).resolves.toBe('ok');
    expect(errors).toHaveLength(1);
    expect(sample(await registry.metrics(), 'holdfast_breaker_calls_total{policy="payments",outcome="success"}')).toBe(
      1,
    );
    stop();
  });

  it('rejects bad options naming the option', () => {
    expect(() => collect({ prefix: 'bad-prefix' })).toThrow(/prefix/);
    expect(() => collect({ registry: {} as never })).toThrow(/registry/);
  });
});

describe('collect() and @holdfast/limit', () => {
  it('counts limit, hedge and fallback events by name, and reads learned concurrency limits', async () => {
    const s = setup();
    s.bus.emit(ev({ type: 'bulkhead.reject', reason: 'full', running: 4, queued: 0, code: 'E_BULKHEAD_FULL' }));
    s.bus.emit(ev({ type: 'rateLimit.reject', retryAfter: 100, code: 'E_RATE_LIMITED' }));
    s.bus.emit(ev({ type: 'rateLimit.storeError', code: 'ECONNREFUSED', failOpen: true }));
    s.bus.emit(ev({ type: 'hedge.attempt', attempt: 2, delay: 10, trigger: 'delay' }));
    s.bus.emit(ev({ type: 'fallback', reason: 'failure', code: 'E_TIMEOUT' }));
    const limiter = { snapshot: (): JsonValue => ({ algorithm: 'gradient2', limit: 37, inFlight: 3 }) };
    s.policies.register('concurrency', 'search', limiter);
    const text = await s.scrape();
    expect(sample(text, 'holdfast_limit_events_total{policy="payments",event="bulkhead_reject"}')).toBe(1);
    expect(sample(text, 'holdfast_limit_events_total{policy="payments",event="rate_limit_reject"}')).toBe(1);
    expect(sample(text, 'holdfast_limit_events_total{policy="payments",event="rate_limit_store_error"}')).toBe(1);
    expect(sample(text, 'holdfast_limit_events_total{policy="payments",event="hedge_attempt"}')).toBe(1);
    expect(sample(text, 'holdfast_limit_events_total{policy="payments",event="fallback"}')).toBe(1);
    expect(sample(text, 'holdfast_concurrency_limit{policy="search"}')).toBe(37);
    s.stop();
  });
});

describe('collect(): buckets', () => {
  it('buckets out of order or repeated are refused, named: they would make a histogram whose buckets go down, or a series twice', async () => {
    for (const buckets of [
      [1, 0.5],
      [0.1, 0.5, 0.5, 1],
    ]) {
      const registry = new Registry();
      let thrown: unknown;
      try {
        collect({ bus: createBus(), registry, policies: createPolicyRegistry(), buckets })();
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(HoldfastConfigError);
      expect((thrown as Error).message).toBe(
        `collect: buckets must be in increasing order, each once (got [${buckets.join(',')}])`,
      );
      expect(registry.getMetricsAsArray()).toEqual([]);
    }
  });
});

describe('collect(): cardinality', () => {
  it('past maxPolicies names, the others share policy="_other" (states summed), with one warning', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error & { code?: string }) => warnings.push(w.code ?? w.name);
    process.on('warning', onWarning);
    try {
      const bus = createBus();
      const registry = new Registry();
      const stop = collect({ bus, registry, policies: createPolicyRegistry(), maxPolicies: 2 });
      for (const source of ['a', 'b', 'c', 'd']) {
        bus.emit(ev({ type: 'breaker.success', source, latency: 5 }));
        bus.emit(ev({ type: 'breaker.open', source, reason: 'manual', failureRate: 0, slowCallRate: 0, opens: 1 }));
      }
      const text = await registry.metrics();
      stop();
      await new Promise((r) => setImmediate(r));
      expect(new Set([...text.matchAll(/policy="([^"]*)"/g)].map((m) => m[1]))).toEqual(new Set(['a', 'b', '_other']));
      expect(sample(text, 'holdfast_breaker_calls_total{policy="_other",outcome="success"}')).toBe(2);
      expect(sample(text, 'holdfast_breaker_calls_total{policy="a",outcome="success"}')).toBe(1);
      // `_other` has no state of its own from events: only named breakers are reported open.
      expect(sample(text, 'holdfast_breaker_state{policy="a",state="open"}')).toBe(1);
      expect(sample(text, 'holdfast_breaker_state{policy="_other",state="open"}')).toBeUndefined();
      expect(warnings.filter((w) => w === 'HOLDFAST_METRICS_CARDINALITY')).toHaveLength(1);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('a disposed policy takes its series and its place under the cap along; registered ones past the cap are counted as _other', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const registry = new Registry();
    const stop = collect({ bus, registry, policies, maxPolicies: 2 });
    const sources = ['x', 'y', 'z'].map((name) => ({ name, snapshot: (): JsonValue => ({ state: 'open' }) }));
    const unregister = sources.map((s) => policies.register('breaker', s.name, s));
    bus.emit(ev({ type: 'breaker.failure', source: 'x', latency: 5, code: 'E' }));
    let text = await registry.metrics();
    expect(sample(text, 'holdfast_breaker_calls_total{policy="x",outcome="failure"}')).toBe(1);
    expect(sample(text, 'holdfast_breaker_state{policy="y",state="open"}')).toBe(1);
    expect(sample(text, 'holdfast_breaker_state{policy="_other",state="open"}')).toBe(1); // z
    unregister[0]?.(); // x leaves: its series go, and z gets its place
    text = await registry.metrics();
    expect(text).not.toContain('policy="x"');
    expect(sample(text, 'holdfast_breaker_state{policy="z",state="open"}')).toBe(1);
    expect(text).not.toContain('policy="_other"');
    stop();
  });
});
