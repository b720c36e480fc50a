import { type EventOf, hiddenName, OTHER_POLICY, type PolicyRegistry } from '@holdfast/core';
import type { Attributes, BatchObservableResult, Meter, Observable } from '@opentelemetry/api';
import { errorTypes, type Handlers, keyOf, observing, type Part } from './metrics.js';
import { attributeNames as A, metricNames as M } from './names.js';

/**
 * Rows kept per counter. Policy names are capped by `maxPolicies` and a policy that leaves takes
 * its rows along, so this bound is only a last guard.
 */
const MAX_ROWS = 5_000;

/** A monotonic count per attribute set. */
class Counts {
  readonly rows = new Map<string, { readonly attributes: Attributes; value: number }>();

  add(attributes: Attributes): void {
    const key = keyOf(attributes);
    const row = this.rows.get(key);
    if (row !== undefined) row.value++;
    else if (this.rows.size < MAX_ROWS) this.rows.set(key, { attributes, value: 1 });
  }

  /** Drops every row of `policy`: it has left, and its counts go with it. */
  forget(policy: string): void {
    for (const [key, row] of this.rows) if (row.attributes[A.policy] === policy) this.rows.delete(key);
  }
}

const num = (snapshot: unknown, field: string): number | undefined => {
  const v = (snapshot as Record<string, unknown> | null | undefined)?.[field];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
};

/**
 * Metrics of @holdfast/limit and of core's hedge() and fallback(): rejections by kind and
 * reason, store errors, hedges and fallbacks from the bus; bulkhead occupancy, the learned
 * concurrency limit and the throttle's refusal probability from the registered snapshots (read
 * structurally: otel does not depend on @holdfast/limit). A limiter nobody registered still
 * reports its limit, from its last `concurrency.limit` event.
 */
export function meterLimits(
  policies: PolicyRegistry,
  label: (name: string) => string,
): Part & { forget: (name: string) => void } {
  const counts = {
    rejections: new Counts(),
    storeErrors: new Counts(),
    hedgeAttempts: new Counts(),
    hedgeRefused: new Counts(),
    fallbacks: new Counts(),
  };
  const errorType = errorTypes();
  // Limiters seen only on the bus, by policy label (the event's source is one already): their limit
  // after the last move. `_other` stands for many limiters: it has no one limit.
  const lastLimit = new Map<string, number>();
  const reject = (kind: string, reason: string) => (e: { source: string; code: string }) =>
    counts.rejections.add({
      [A.policy]: e.source,
      [A.limitKind]: kind,
      [A.limitReason]: reason,
      [A.errorType]: errorType(e.code),
    });

  const handlers: Handlers = {
    'bulkhead.reject': (e: EventOf<'bulkhead.reject'>) =>
      reject('bulkhead', e.reason === 'full' ? 'full' : 'queue_timeout')(e),
    'rateLimit.reject': reject('rate_limit', 'rate_limited'),
    'concurrency.reject': reject('concurrency', 'concurrency_limit'),
    'throttle.reject': reject('throttle', 'throttled'),
    'rateLimit.storeError': (e) => {
      // A boolean: text from an emitter of a user's own is no attribute value.
      const attributes: Attributes = { [A.policy]: e.source, [A.failOpen]: e.failOpen === true };
      // No code, no `error.type`, as on fallbacks: undefined is no attribute value.
      if (e.code !== undefined) attributes[A.errorType] = errorType(e.code);
      counts.storeErrors.add(attributes);
    },
    'concurrency.limit': (e) => {
      if (e.source === OTHER_POLICY || !Number.isFinite(e.to)) return;
      if (lastLimit.has(e.source) || lastLimit.size < MAX_ROWS) lastLimit.set(e.source, e.to);
    },
    'hedge.attempt': (e) => counts.hedgeAttempts.add({ [A.policy]: e.source, [A.hedgeTrigger]: hiddenName(e.trigger) }),
    'hedge.budgetExhausted': (e) => counts.hedgeRefused.add({ [A.policy]: e.source }),
    fallback: (e) => {
      const attributes: Attributes = { [A.policy]: e.source, [A.fallbackReason]: hiddenName(e.reason) };
      if (e.code !== undefined) attributes[A.errorType] = errorType(e.code);
      counts.fallbacks.add(attributes);
    },
  };

  const attach = (meter: Meter) => {
    const rejections = meter.createObservableCounter(M.limitRejections, {
      unit: '{call}',
      description:
        'Calls a bulkhead, rate limiter, adaptive concurrency limiter or throttle refused, by kind and reason.',
    });
    const storeErrors = meter.createObservableCounter(M.rateLimitStoreErrors, {
      unit: '{error}',
      description: 'Decisions a Redis rate limiter could not get from Redis.',
    });
    const hedgeAttempts = meter.createObservableCounter(M.hedgeAttempts, {
      unit: '{attempt}',
      description: 'Extra attempts a hedge policy sent, by trigger.',
    });
    const hedgeRefused = meter.createObservableCounter(M.hedgeBudgetRejections, {
      unit: '{attempt}',
      description: 'Hedges that were due but that the hedge budget refused.',
    });
    const fallbacks = meter.createObservableCounter(M.fallbacks, {
      unit: '{call}',
      description: 'Calls a fallback served in place of a failure or a refused result.',
    });
    const running = meter.createObservableUpDownCounter(M.bulkheadRunning, {
      unit: '{call}',
      description: 'Calls running in a bulkhead now.',
    });
    const queued = meter.createObservableUpDownCounter(M.bulkheadQueued, {
      unit: '{call}',
      description: 'Calls waiting for a bulkhead slot now.',
    });
    const capacity = meter.createObservableGauge(M.bulkheadCapacity, {
      unit: '{call}',
      description: 'Calls a bulkhead lets run at once (its maxConcurrent).',
    });
    const limit = meter.createObservableGauge(M.concurrencyLimit, {
      unit: '{call}',
      description: 'The concurrency limit an adaptive concurrency limiter has learned.',
    });
    const inFlight = meter.createObservableUpDownCounter(M.concurrencyInFlight, {
      unit: '{call}',
      description: 'Calls in flight through an adaptive concurrency limiter.',
    });
    const probability = meter.createObservableGauge(M.throttleProbability, {
      unit: '1',
      description: 'The probability an adaptive throttle refuses a call now, 0..1.',
    });
    const observe = (result: BatchObservableResult) => {
      const report = (counter: Observable, c: Counts) => {
        for (const row of c.rows.values()) result.observe(counter, row.value, row.attributes);
      };
      report(rejections, counts.rejections);
      report(storeErrors, counts.storeErrors);
      report(hedgeAttempts, counts.hedgeAttempts);
      report(hedgeRefused, counts.hedgeRefused);
      report(fallbacks, counts.fallbacks);
      // Per gauge, a value per policy label: a policy's own (its newest copy's: one re-created
      // before the old was disposed), or for `_other` (past maxPolicies) the sum over the policies
      // it stands for (the highest, for a probability).
      const values = new Map<Observable, Map<string, number>>();
      const gauge = (
        g: Observable,
        value: number | undefined,
        policy: string,
        combine = (a: number, b: number) => a + b,
      ) => {
        if (value === undefined) return;
        let byPolicy = values.get(g);
        if (byPolicy === undefined) values.set(g, (byPolicy = new Map()));
        const had = byPolicy.get(policy);
        byPolicy.set(policy, had === undefined || policy !== OTHER_POLICY ? value : combine(had, value));
      };
      // Limits by policy label: the bus's (labelled already; labelled again, a shown name took a
      // place of its own and the limiter went to `_other`), a registered snapshot's over them.
      for (const [policy, l] of lastLimit) gauge(limit, l, policy);
      for (const { kind, name, snapshot } of policies.snapshots()) {
        if (kind === 'bulkhead') {
          const policy = label(name);
          gauge(running, num(snapshot, 'running'), policy);
          gauge(queued, num(snapshot, 'queued'), policy);
          gauge(capacity, num(snapshot, 'maxConcurrent'), policy);
        } else if (kind === 'concurrency') {
          const policy = label(name);
          gauge(limit, num(snapshot, 'limit'), policy);
          gauge(inFlight, num(snapshot, 'inFlight'), policy);
        } else if (kind === 'throttle') {
          gauge(probability, num(snapshot, 'probability'), label(name), Math.max);
        }
      }
      for (const [g, byPolicy] of values) {
        for (const [policy, value] of byPolicy) result.observe(g, value, { [A.policy]: policy });
      }
    };
    const observables = [rejections, storeErrors, hedgeAttempts, hedgeRefused, fallbacks, running, queued];
    return observing(meter, [...observables, capacity, limit, inFlight, probability], observe);
  };
  const forget = (name: string) => {
    for (const c of Object.values(counts)) c.forget(name);
    lastLimit.delete(name);
  };
  return { handlers, forget, attach };
}
