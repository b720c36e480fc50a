/**
 * Property: every public factory of every package, given any value as its options (fc.anything(),
 * and objects made of the factory's own option names with hostile values), either builds or throws
 * the library's HoldfastConfigError naming the factory and the option. Never a TypeError from
 * reading a property of null, never an error from describing the bad value, never a silent
 * acceptance of a typo.
 */

import { anomalyWatch, halfSpaceForest, robustBaseline, scoreSeries, syntheticSeries } from '@holdfast/anomaly';
import { breakerOptionsSchema, breakerRegistry, circuitBreaker, registryOptionsSchema } from '@holdfast/breaker';
import {
  drill,
  drillOptionsSchema,
  faultProxy,
  faultProxyOptionsSchema,
  faultyFetch,
  faultyFetchOptionsSchema,
  injectBehavior,
  injectBehaviorOptionsSchema,
  injectFault,
  injectFaultOptionsSchema,
  injectLatency,
  injectLatencyOptionsSchema,
  injectOutcome,
  injectOutcomeOptionsSchema,
} from '@holdfast/chaos';
import {
  createBus,
  fallback,
  fallbackOptionsSchema,
  HoldfastConfigError,
  healthReport,
  hedge,
  hedgeOptionsSchema,
  ManualClock,
  timeout,
  timeoutOptionsSchema,
} from '@holdfast/core';
import { dashboard, dashboardOptionsSchema, healthHandler } from '@holdfast/dashboard';
import { failover, failoverOptionsSchema } from '@holdfast/failover';
import {
  resilientFetch,
  resilientFetchOptionsSchema,
  withBreaker,
  withIdempotency,
  withRetry,
  withTimeout,
} from '@holdfast/fetch';
import * as decorators from '@holdfast/fetch/decorators';
import {
  idempotent,
  idempotentOptionsSchema,
  memoryStore,
  memoryStoreOptionsSchema,
  redisStore,
  redisStoreOptionsSchema,
} from '@holdfast/idempotency';
import { idempotency as expressIdempotency } from '@holdfast/idempotency/express';
import {
  adaptiveConcurrency,
  adaptiveConcurrencyOptionsSchema,
  adaptiveThrottle,
  adaptiveThrottleOptionsSchema,
  bulkhead,
  bulkheadOptionsSchema,
  slidingWindow,
  slidingWindowOptionsSchema,
  tokenBucket,
  tokenBucketOptionsSchema,
} from '@holdfast/limit';
import { loadShedding as expressShedding } from '@holdfast/limit/express';
import { redisRateLimiter, redisRateLimiterOptionsSchema } from '@holdfast/limit/redis';
import { instrument, instrumentOptionsSchema } from '@holdfast/otel';
import { collect, collectOptionsSchema } from '@holdfast/prometheus';
import { retry, retryBudget, retryBudgetOptionsSchema, retryOptionsSchema } from '@holdfast/retry';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { baselineOptionsSchema, forestOptionsSchema, watchOptionsSchema } from '../packages/anomaly/src/options.js';
import { httpIdempotencyOptionsSchema } from '../packages/idempotency/src/http/options.js';

/** A zod schema, as the packages export it. */
type ZodLike = { readonly _zod: unknown };
type Schema = ZodLike | undefined;

interface Factory {
  /** The name its HoldfastConfigError starts with. */
  readonly owner: string;
  /** Builds with `options`; returns something to clean up, or a promise of it. */
  readonly make: (options: unknown) => unknown;
  /** The schema its option names come from, for the shaped hostile objects. */
  readonly schema?: Schema;
  /** Shaped objects may come out valid: only when building a valid one is harmless. */
  readonly shaped?: boolean;
  /** What it returns is the function that stops it (instrument, collect). */
  readonly returnsStop?: boolean;
  /** Options whose every key it knows (a typo must be refused). */
  readonly known?: readonly string[];
}

const fn = async () => 1;

const factories: readonly Factory[] = [
  { owner: 'createBus', make: (o) => createBus(o as never), known: ['onListenerError'] },
  { owner: 'timeout', make: (o) => timeout(100, o as never), schema: timeoutOptionsSchema },
  { owner: 'timeout', make: (o) => timeout(o as never) },
  { owner: 'fallback', make: (o) => fallback(o as never), schema: fallbackOptionsSchema },
  { owner: 'hedge', make: (o) => hedge(o as never), schema: hedgeOptionsSchema },
  { owner: 'healthReport', make: (o) => healthReport(o as never), known: ['policies', 'critical', 'clock'] },
  { owner: 'circuitBreaker', make: (o) => circuitBreaker(o as never), schema: breakerOptionsSchema },
  { owner: 'breakerRegistry', make: (o) => breakerRegistry(o as never), schema: registryOptionsSchema },
  { owner: 'retry', make: (o) => retry(o as never), schema: retryOptionsSchema },
  { owner: 'retryBudget', make: (o) => retryBudget(o as never), schema: retryBudgetOptionsSchema },
  { owner: 'idempotent', make: (o) => idempotent(fn, o as never), schema: idempotentOptionsSchema },
  { owner: 'memoryStore', make: (o) => memoryStore(o as never), schema: memoryStoreOptionsSchema },
  { owner: 'redisStore', make: (o) => redisStore(o as never), schema: redisStoreOptionsSchema },
  {
    owner: 'idempotency/express',
    make: (o) => expressIdempotency(o as never),
    schema: httpIdempotencyOptionsSchema,
  },
  { owner: 'failover', make: (o) => failover(o as never), schema: failoverOptionsSchema },
  { owner: 'resilientFetch', make: (o) => resilientFetch(o as never), schema: resilientFetchOptionsSchema },
  { owner: 'retry', make: (o) => withRetry(fn, o as never), schema: retryOptionsSchema },
  { owner: 'circuitBreaker', make: (o) => withBreaker(fn, o as never), schema: breakerOptionsSchema },
  { owner: 'timeout', make: (o) => withTimeout(fn, 100, o as never), schema: timeoutOptionsSchema },
  { owner: 'withIdempotency', make: (o) => withIdempotency(fn, o as never) },
  { owner: 'retry', make: (o) => decorators.retry(o as never), schema: retryOptionsSchema },
  { owner: 'circuitBreaker', make: (o) => decorators.breaker(o as never), schema: breakerOptionsSchema },
  { owner: 'timeout', make: (o) => decorators.timeout(100, o as never), schema: timeoutOptionsSchema },
  { owner: '@idempotent', make: (o) => decorators.idempotent(o as never) },
  { owner: 'bulkhead', make: (o) => bulkhead(o as never), schema: bulkheadOptionsSchema },
  { owner: 'tokenBucket', make: (o) => tokenBucket(o as never), schema: tokenBucketOptionsSchema },
  { owner: 'slidingWindow', make: (o) => slidingWindow(o as never), schema: slidingWindowOptionsSchema },
  {
    owner: 'adaptiveConcurrency',
    make: (o) => adaptiveConcurrency(o as never),
    schema: adaptiveConcurrencyOptionsSchema,
  },
  { owner: 'adaptiveThrottle', make: (o) => adaptiveThrottle(o as never), schema: adaptiveThrottleOptionsSchema },
  { owner: 'redisRateLimiter', make: (o) => redisRateLimiter(o as never), schema: redisRateLimiterOptionsSchema },
  { owner: 'limit/express', make: (o) => expressShedding(o as never) },
  { owner: 'instrument', make: (o) => instrument(o as never), schema: instrumentOptionsSchema, returnsStop: true },
  { owner: 'collect', make: (o) => collect(o as never), schema: collectOptionsSchema, returnsStop: true },
  { owner: 'dashboard', make: (o) => dashboard(o as never), schema: dashboardOptionsSchema },
  { owner: 'healthHandler', make: (o) => healthHandler(o as never), known: ['policies', 'critical', 'clock'] },
  // Shaped objects could make a valid drill, which would run its load: fc.anything() only.
  { owner: 'drill', make: (o) => drill(o as never), schema: drillOptionsSchema, shaped: false },
  { owner: 'faultProxy', make: (o) => faultProxy(o as never), schema: faultProxyOptionsSchema },
  { owner: 'faultyFetch', make: (o) => faultyFetch(o as never), schema: faultyFetchOptionsSchema },
  { owner: 'injectLatency', make: (o) => injectLatency(o as never), schema: injectLatencyOptionsSchema },
  { owner: 'injectFault', make: (o) => injectFault(o as never), schema: injectFaultOptionsSchema },
  { owner: 'injectOutcome', make: (o) => injectOutcome(o as never), schema: injectOutcomeOptionsSchema },
  { owner: 'injectBehavior', make: (o) => injectBehavior(o as never), schema: injectBehaviorOptionsSchema },
  { owner: 'anomalyWatch', make: (o) => anomalyWatch(o as never), schema: watchOptionsSchema },
  { owner: 'robustBaseline', make: (o) => robustBaseline(o as never), schema: baselineOptionsSchema },
  { owner: 'halfSpaceForest', make: (o) => halfSpaceForest(o as never), schema: forestOptionsSchema },
  { owner: 'scoreSeries', make: (o) => scoreSeries([1, 2, 3], o as never) },
  { owner: 'syntheticSeries', make: (o) => syntheticSeries('dailySpikes' as never, o as never) },
];

/** The option names of a zod object schema, through wrappers (refine, default, pipe...). */
function shapeOf(schema: Schema): Record<string, ZodLike> | undefined {
  let s = schema as unknown as { shape?: Record<string, ZodLike>; _zod?: { def: Record<string, unknown> } } | undefined;
  for (let i = 0; i < 10 && s !== undefined; i++) {
    if (s.shape !== undefined) return s.shape;
    const def = s._zod?.def;
    s = (def?.innerType ?? def?.in ?? def?.schema) as typeof s;
  }
  return undefined;
}

const hostileLeaf = fc.oneof(
  fc.anything({ withNullPrototype: true, withBigInt: true, withMap: true, withSet: true, withBoxedValues: true }),
  fc.constantFrom(NaN, Infinity, -Infinity, -1, 0, 0.5, 1, 2 ** 31, Number.MAX_SAFE_INTEGER, '', 'x', true, false),
  fc.constant(() => 1),
  fc.constant(createBus()),
  fc.constant(new ManualClock()),
  fc.constant(Object.create(null) as unknown),
  fc.constant([] as unknown),
);

/** Objects made of the schema's own option names, each holding a hostile value or a shaped one. */
function shaped(schema: Schema, depth = 0): fc.Arbitrary<unknown> {
  const shape = shapeOf(schema);
  if (shape === undefined || depth > 2) return hostileLeaf;
  const keys = Object.keys(shape);
  const entries = Object.fromEntries(keys.map((k) => [k, fc.oneof(hostileLeaf, shaped(shape[k], depth + 1))]));
  return fc.record(entries, { requiredKeys: [] });
}

/** Closes whatever a factory built, so nothing is left running. */
async function cleanUp(factory: Factory, built: unknown): Promise<void> {
  const value = (await built) as Record<string, unknown> | ((...args: unknown[]) => unknown) | undefined;
  if (value === undefined || value === null) return;
  if (factory.returnsStop === true) return void (await (value as () => unknown)());
  for (const method of ['dispose', 'close', 'stop']) {
    const m = (value as Record<string, unknown>)[method];
    if (typeof m === 'function') return void (await (m as () => unknown).call(value));
  }
}

/** Builds with `options`; what it threw (sync or async), or undefined when it built. */
async function outcomeOf(factory: Factory, options: unknown): Promise<unknown> {
  let built: unknown;
  try {
    built = factory.make(options);
    if (built instanceof Promise) built = await built;
  } catch (error) {
    return error;
  }
  await cleanUp(factory, built);
  return undefined;
}

function checkError(factory: Factory, options: unknown, error: unknown): void {
  if (error === undefined) return;
  if (!(error instanceof HoldfastConfigError)) {
    throw new Error(`${factory.owner} threw ${String((error as Error)?.stack ?? error)} for ${fc.stringify(options)}`);
  }
  expect(error.code).toBe('E_CONFIG');
  expect(error.message.startsWith(`${factory.owner}: `)).toBe(true);
  expect(error.issues.length).toBeGreaterThan(0);
  for (const issue of error.issues) expect(typeof issue.message).toBe('string');
}

/** A key no factory knows: a typo of an option. */
function typoOf(known: readonly string[]): fc.Arbitrary<string> {
  return fc
    .oneof(fc.string({ minLength: 1, maxLength: 12 }), fc.constantFrom(...known.map((k) => `${k}s`), 'timout', 'naem'))
    .filter((k) => !known.includes(k) && k !== '__proto__');
}

describe('every public factory, any options', () => {
  for (const factory of factories) {
    const known = factory.known ?? Object.keys(shapeOf(factory.schema) ?? {});
    if (known.length > 0) {
      it(`${factory.owner}: an unknown option (a typo) is refused, named`, async () => {
        await fc.assert(
          fc.asyncProperty(typoOf(known), fc.anything(), async (typo, value) => {
            const error = await outcomeOf(factory, { [typo]: value });
            expect(error).toBeInstanceOf(HoldfastConfigError);
            checkError(factory, { [typo]: value }, error);
            expect((error as HoldfastConfigError).issues.map((i) => i.path)).toContain(typo);
          }),
          { numRuns: 30 },
        );
      });
    }
    it(`${factory.owner}: fc.anything() builds or throws HoldfastConfigError`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.anything({
            withNullPrototype: true,
            withBigInt: true,
            withMap: true,
            withSet: true,
            withBoxedValues: true,
          }),
          async (options) => checkError(factory, options, await outcomeOf(factory, options)),
        ),
        { numRuns: 150 },
      );
    });
    if (factory.schema !== undefined && factory.shaped !== false) {
      it(`${factory.owner}: its own option names with hostile values build or throw HoldfastConfigError`, async () => {
        await fc.assert(
          fc.asyncProperty(shaped(factory.schema), async (options) =>
            checkError(factory, options, await outcomeOf(factory, options)),
          ),
          { numRuns: 150 },
        );
      });
    }
  }
});
