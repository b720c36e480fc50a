import { getEventListeners } from 'node:events';
import { circuitBreaker } from '@holdfast/breaker';
import {
  type CallContext,
  createBus,
  fallback,
  hasCode,
  hedge,
  ManualClock,
  type Policy,
  pipeline,
  timeout,
} from '@holdfast/core';
import { bulkhead } from '@holdfast/limit';
import { retry } from '@holdfast/retry';
import { describe, expect, it } from 'vitest';

type Kind = 'timeout' | 'retry' | 'breaker' | 'hedge' | 'fallback' | 'bulkhead';
const kinds: readonly Kind[] = ['timeout', 'retry', 'breaker', 'hedge', 'fallback', 'bulkhead'];

function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [[...items]];
  return items.flatMap((item, i) =>
    permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]),
  );
}

/** Counts the calls that reach a policy, passing everything through as it is. */
function counted(policy: Policy, count: { n: number }): Policy {
  return {
    name: policy.name,
    execute(fn, options) {
      count.n++;
      return policy.execute(fn, options);
    },
  };
}

type Scenario = 'hangs' | 'fails' | 'second';

/** hangs: waits for its signal. fails: rejects at once. second: fails its first try, then succeeds. */
function operation(scenario: Scenario, calls: { n: number }) {
  return (ctx: CallContext) => {
    const n = ++calls.n;
    if (scenario === 'fails' || (scenario === 'second' && n === 1)) {
      return Promise.reject(Object.assign(new Error('reset'), { code: 'ECONNRESET' }));
    }
    if (scenario === 'second') return Promise.resolve('value');
    return new Promise<never>((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));
  };
}

async function run(order: readonly Kind[], scenario: Scenario) {
  const clock = new ManualClock();
  const bus = createBus();
  const events: Record<string, number> = {};
  bus.on('*', (e) => {
    events[e.type] = (events[e.type] ?? 0) + 1;
  });
  const breakerCalls = { n: 0 };
  const breaker = circuitBreaker({ bus, clock, policies: false, consecutiveFailures: 100 });
  const make: Record<Kind, () => Policy> = {
    timeout: () => timeout(100, { bus, clock }),
    retry: () => retry({ bus, clock, budget: false, maxAttempts: 3, backoff: { initialDelay: 10 }, random: () => 0.5 }),
    breaker: () => counted(breaker, breakerCalls),
    hedge: () => hedge({ delay: 50, safe: true, bus, clock, policies: false, budget: false }),
    fallback: () => fallback({ value: 'fb', bus, clock }),
    bulkhead: () => bulkhead({ maxConcurrent: 2, maxQueue: 10, bus, clock, policies: false }),
  };
  const entered: Record<Kind, { n: number }> = {
    timeout: { n: 0 },
    retry: { n: 0 },
    breaker: breakerCalls,
    hedge: { n: 0 },
    fallback: { n: 0 },
    bulkhead: { n: 0 },
  };
  const p = pipeline(...order.map((k) => (k === 'breaker' ? make[k]() : counted(make[k](), entered[k]))));
  const ac = new AbortController();
  const calls = { n: 0 };
  let settled = false;
  const outcome = p.execute(operation(scenario, calls), { signal: ac.signal }).then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  void outcome.then(() => {
    settled = true;
  });
  // Time moves in steps until the call settles: whatever timer is still pending then outlived it.
  for (let t = 0; t < 2_000 && !settled; t += 5) {
    await clock.advance(5);
    await new Promise((r) => setImmediate(r));
  }
  const pending = clock.pending;
  await clock.runAll();
  return {
    pending,
    settled,
    outcome: settled ? await outcome : undefined,
    clock,
    ac,
    calls,
    events,
    breaker,
    breakerCalls,
    entered,
  };
}

const at = (order: readonly Kind[], k: Kind) => order.indexOf(k);

describe('every order of timeout, retry, breaker, hedge, fallback, bulkhead (review)', () => {
  const orders = permutations(kinds);
  for (const scenario of ['hangs', 'fails', 'second'] as const) {
    it(`${scenario}: each of the ${orders.length} orders settles, leaves nothing behind, and counts once`, async () => {
      const wrong: string[] = [];
      for (const order of orders) {
        const r = await run(order, scenario);
        const name = `${order.join(' > ')} [${scenario}]`;
        const problems: string[] = [];
        if (!r.settled) problems.push('never settled');
        if (r.pending !== 0) problems.push(`${r.pending} timers outlived the call`);
        const left = getEventListeners(r.ac.signal, 'abort').length;
        if (left !== 0) problems.push(`${left} listeners left on the caller's signal`);
        const w = r.breaker.snapshot().window;
        if (w.failures + w.successes > r.breakerCalls.n) {
          problems.push(`breaker counted ${w.failures + w.successes} outcomes for ${r.breakerCalls.n} calls`);
        }
        if (r.calls.n > 6) problems.push(`${r.calls.n} attempts`);
        // What the caller gets.
        const o = r.outcome as { value?: unknown; error?: unknown } | undefined;
        const fallbackServes =
          at(order, 'fallback') !== -1 && (scenario !== 'hangs' || at(order, 'fallback') < at(order, 'timeout'));
        if (o !== undefined) {
          if (scenario === 'second' && !('value' in o && (o.value === 'value' || o.value === 'fb'))) {
            problems.push(`got ${String(o.error ?? o.value)}`);
          } else if (scenario !== 'second') {
            if (fallbackServes && o.value !== 'fb')
              problems.push(`fallback did not serve: ${String((o.error as Error)?.message ?? o.value)}`);
            if (!fallbackServes && !('error' in o)) problems.push(`resolved with ${String(o.value)}`);
            if (!fallbackServes && 'error' in o) {
              const e = o.error;
              const ok = ['E_TIMEOUT', 'E_RETRY_EXHAUSTED', 'ECONNRESET'].some(
                (c) => hasCode(e, c as never) || (e as { code?: string })?.code === c,
              );
              if (!ok) problems.push(`rejected with ${String((e as Error)?.name)}: ${String((e as Error)?.message)}`);
            }
          }
        }
        // A timeout fires at most once per call that reaches it; outside the retry and the hedge, once in all.
        const timeouts = r.events.timeout ?? 0;
        if (timeouts > r.entered.timeout.n) problems.push(`${timeouts} timeouts for ${r.entered.timeout.n} calls`);
        const giveUps = r.events['retry.giveUp'] ?? 0;
        if (giveUps > r.entered.retry.n) problems.push(`${giveUps} retry.giveUp for ${r.entered.retry.n} calls`);
        if (
          scenario === 'hangs' &&
          at(order, 'timeout') < Math.min(at(order, 'retry'), at(order, 'hedge')) &&
          timeouts !== 1
        ) {
          problems.push(`the overall timeout fired ${timeouts} times`);
        }
        // Each attempt that reached the breaker and failed is one failure, never two.
        if (w.failures > r.calls.n) problems.push(`breaker counted ${w.failures} failures for ${r.calls.n} attempts`);
        if (problems.length > 0) wrong.push(`${name}: ${problems.join('; ')}`);
      }
      expect(wrong).toEqual([]);
    }, 120_000);
  }
});
