/**
 * A policy named with a URL (a DSN from `process.env.DATABASE_URL`, an API URL with `?token=`)
 * must not carry its credentials into events, snapshots, healthReport() or error messages.
 */
import { circuitBreaker } from '@holdfast/breaker';
import {
  createBus,
  createPolicyRegistry,
  type HoldfastEvent,
  healthReport,
  ManualClock,
  timeout,
} from '@holdfast/core';
import { bulkhead } from '@holdfast/limit';
import { retry, retryBudget } from '@holdfast/retry';
import { describe, expect, it } from 'vitest';

const SECRET = 's3cr3t-pw';

/** Everything a name may show up in, as one text to search for the secret. */
function shown(events: HoldfastEvent[], ...more: unknown[]): string {
  return JSON.stringify([events.map((e) => e.source), ...more]);
}

const messageOf = (p: Promise<unknown>) =>
  p.then(
    () => 'resolved',
    (e: unknown) => (e as Error).message,
  );

describe('a policy named with a URL does not show its secrets (secrets-bus)', () => {
  it('circuitBreaker: events, snapshot, healthReport() and the open-circuit error', async () => {
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('*', (e) => events.push(e));
    const policies = createPolicyRegistry();
    const breaker = circuitBreaker({
      name: `postgres://app:${SECRET}@db.internal:5432/orders`,
      consecutiveFailures: 1,
      bus,
      policies,
      clock: new ManualClock(),
    });
    const first = await messageOf(breaker.execute(() => Promise.reject(new Error('down'))));
    const refused = await messageOf(breaker.execute(() => 'not run'));
    const report = healthReport({ policies });
    expect(first).toBe('down');
    expect(breaker.name).toBe('postgres://***@db.internal:5432/orders');
    expect(events.map((e) => e.type)).toEqual(['breaker.failure', 'breaker.open', 'breaker.reject']);
    const text = shown(events, breaker.snapshot(), policies.snapshots(), report, refused);
    expect(text).not.toContain(SECRET);
    expect(text).toContain('postgres://***@db.internal:5432/orders');
    expect(report.checks.map((c) => c.name)).toEqual(['postgres://***@db.internal:5432/orders']);
    breaker.dispose();
  });

  it('retry and retryBudget: a ?token= in the name is hidden in events and the budget snapshot', async () => {
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('*', (e) => events.push(e));
    const policies = createPolicyRegistry();
    const clock = new ManualClock();
    const budget = retryBudget({ name: `https://api.example.com/v1?token=${SECRET}&page=2`, clock, policies });
    const policy = retry({
      name: `orders via https://api.example.com/v1?api_key=${SECRET}`,
      maxAttempts: 2,
      jitter: 'none',
      backoff: { type: 'constant', initialDelay: 0 },
      budget,
      bus,
      clock,
    });
    const failed = await messageOf(policy.execute(() => Promise.reject(new Error('down'))));
    expect(failed).toBe('orders via https://api.example.com/v1?api_key=***: gave up after 2 attempts: down');
    expect(events.map((e) => e.type)).toEqual(['retry.attempt', 'retry.giveUp']);
    const text = shown(events, budget.snapshot(), policies.snapshots(), healthReport({ policies }), failed);
    expect(text).not.toContain(SECRET);
    expect(events[0]?.source).toBe('orders via https://api.example.com/v1?api_key=***');
    expect(policies.snapshots().map((s) => s.name)).toEqual(['https://api.example.com/v1?token=***&page=2']);
    budget.dispose();
  });

  it('bulkhead and timeout: the refusal and the timeout name the policy without its password', async () => {
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('*', (e) => events.push(e));
    const policies = createPolicyRegistry();
    const clock = new ManualClock();
    const name = `redis://:${SECRET}@cache.internal:6379/0`;
    const limiter = bulkhead({ name, maxConcurrent: 1, bus, policies, clock });
    let release = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    const running = limiter.execute(() => held);
    const refused = await messageOf(limiter.execute(() => 'not run'));
    release();
    await running;
    const slow = timeout(10, { name, bus, clock });
    const late = messageOf(
      slow.execute(
        ({ signal }) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
      ),
    );
    await clock.advance(10);
    const timedOut = await late;
    expect(events.map((e) => e.type)).toEqual(['bulkhead.reject', 'timeout']);
    const text = shown(events, limiter.snapshot(), policies.snapshots(), refused, timedOut);
    expect(text).not.toContain(SECRET);
    expect(refused).toContain('redis://***@cache.internal:6379/0');
    expect(timedOut).toContain('redis://***@cache.internal:6379/0');
    limiter.dispose();
  });

  it('a name refused as too long does not show its password in the error', () => {
    const name = `postgres://app:${SECRET}@db.internal/${'x'.repeat(200)}`;
    let message = '';
    try {
      circuitBreaker({ name, policies: false });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/^circuitBreaker: name /);
    expect(message).not.toContain(SECRET);
  });

  it('names that are no URL, or a URL without secrets, are kept as given', () => {
    for (const name of ['orders-db', 'https://api.example.com/v1?page=2', 'a@b: c', 'payments #2']) {
      expect(circuitBreaker({ name, policies: false }).name).toBe(name);
    }
  });
});
