import {
  busOption,
  clockOption,
  durationOption,
  fnOption,
  hideSecrets,
  nameOption,
  policiesOption,
  positiveDurationOption,
  Redactor,
} from '@holdfast/core';
import { z } from 'zod';
import type { BudgetLike } from './budget.js';
import type { Endpoint } from './endpoint.js';
import type { ErrorClass, RoleCheckSettings, RoleReport } from './roles.js';

/** Node's timers overflow past this many milliseconds. */
const MAX_TIMER_MS = 2_147_483_647;
const timerDuration = positiveDurationOption.max(MAX_TIMER_MS);
/** `ejection.maxTime` by default; with `ejection: false`, the longest a failed probe doubles an eject() to. */
export const DEFAULT_MAX_EJECTION_MS = 300_000;
const share = z.number().min(0).max(1);
/** The largest endpoint weight: round-robin's running sums of weights stay exact far below 2^53. */
export const MAX_WEIGHT = 1_000_000;
/** Hides credentials and secret query parameters of string endpoints: their names are shown everywhere. */
export const redactor = new Redactor();

type InnerIssue = { path: PropertyKey[]; message: string; code: string; keys?: string[] };

/**
 * `false` (turned off) or an object of settings. A plain union would report a bad setting as
 * "Invalid input" on the whole object; this names the setting inside it.
 */
function offOr<S extends z.ZodType>(schema: S) {
  return z.union([z.literal(false), schema], {
    error: (issue) => {
      const inner = (issue as { errors?: InnerIssue[][] }).errors?.[1]?.[0];
      if (inner === undefined) return 'must be false or an object';
      if (inner.code === 'unrecognized_keys') return `has ${inner.keys?.join(', ')}, which is not a known option`;
      return inner.path.length === 0 ? inner.message : `${inner.path.join('.')} ${inner.message}`;
    },
  });
}

/** A name as shown everywhere: any URL in it without credentials, secret parameters hidden. */
export const shownName = (name: string): string => redactor.text(redactor.url(name));

const endpointObject = z.strictObject({
  /**
   * A unique name: what events, snapshots and `drain(name)` use. Credentials and secret query
   * parameters in it are shown as `***` (it is logged and served); `drain()` takes it either way.
   */
  name: z.string().min(1).max(200), // as given, for drain(name): shownName() hides its secrets below
  /** Anything the call needs to reach the endpoint: a base URL, a `pg.Pool`, an ioredis client. */
  target: z.unknown(),
  /**
   * Share of traffic relative to the others (round-robin, least-connections, consistent-hash), at
   * most 1,000,000: shares are relative, and far larger weights overflow the balancers' sums.
   * @default 1
   */
  weight: z.number().finite().positive().max(MAX_WEIGHT).default(1),
  /** Active-passive rank: 0 is the primary, 1 the first standby, and so on. @default 0 */
  priority: z.number().int().nonnegative().default(0),
});

/**
 * An endpoint: an object, or a string that is its target (a base URL, say) and, with any
 * credentials and secret query parameters hidden, its name.
 */
const endpointOption = z.union([
  z
    .string()
    .min(1)
    .transform((url) => ({ name: shownName(url), given: url, target: url as unknown, weight: 1, priority: 0 })),
  endpointObject.transform((e) => ({ ...e, name: shownName(e.name), given: e.name })),
]);

const healthSchema = z.strictObject({
  /**
   * Checks one endpoint. It passes when it resolves to anything but `false`; it fails when it
   * throws, rejects, resolves to `false` or outlives `timeout` (its `signal` aborts then).
   */
  check: fnOption<(endpoint: Endpoint, signal: AbortSignal) => unknown>(),
  /** Time between the end of one check of an endpoint and the start of the next. @default 10_000 */
  interval: timerDuration.default(10_000),
  /** Each wait is the interval plus or minus this share of it, at random. @default 0.1 */
  jitter: share.default(0.1),
  /** A check still running after this long has failed. @default 2_000 */
  timeout: timerDuration.default(2_000),
  /** Consecutive passing checks that make an unhealthy endpoint healthy. @default 2 */
  healthyAfter: z.number().int().positive().default(2),
  /** Consecutive failing checks that make a healthy endpoint unhealthy. @default 3 */
  unhealthyAfter: z.number().int().positive().default(3),
});

const rolesSchema = z.strictObject({
  /**
   * Asks one endpoint what it is: resolves to `{ role: 'primary' | 'replica', token?, lag? }`.
   * Throwing, rejecting or outliving `timeout` counts as unreachable. `settings` is the set's
   * `interval` and `timeout`, and `firstRound`: whether another endpoint had neither answered a
   * check nor been found unreachable as this one started (a replica reported then is asked again
   * once every endpoint has). Ready-made: `pgRoles()`
   * from `@holdfast/failover/pg`, `redisRoles()` from `@holdfast/failover/ioredis`.
   */
  check:
    fnOption<
      (endpoint: Endpoint, signal: AbortSignal, settings: RoleCheckSettings) => RoleReport | PromiseLike<RoleReport>
    >(),
  /**
   * Orders the tokens of two primaries (> 0: the first is newer). One that throws or answers
   * NaN orders nothing: the two tie, so neither is written to.
   * @default element by element
   */
  compare: fnOption<(a: unknown, b: unknown) => number>().optional(),
  /**
   * What an error from a call says about its endpoint: `failure` (counts toward ejection),
   * `alive` (it answered: never counts, never retried elsewhere), `readOnly` (it is no longer the
   * primary: roles are checked again at once).
   * @default every error is a `failure`
   */
  classify: fnOption<(error: unknown) => ErrorClass>().optional(),
  /** Time between the end of one role check of an endpoint and the start of the next. @default 2_000 */
  interval: timerDuration.default(2_000),
  /** A role check still running after this long has failed. @default 1_000 */
  timeout: timerDuration.default(1_000),
  /**
   * Failed checks in a row that make a replica unreachable (the first check decides at once). A
   * primary's first failed check does, in a set of two or more: frozen, it may be deposed before a
   * second one ends. @default 2
   */
  unreachableAfter: z.number().int().positive().default(2),
  /**
   * How long a call made before every endpoint has answered once (or failed `unreachableAfter`
   * checks, asked again at once until it has) waits for that. @default 5_000
   */
  wait: timerDuration.default(5_000),
  /**
   * Reads go only to replicas at most this far behind (ms); others are skipped, and so are
   * replicas whose lag is unknown (the check reported none, e.g. a link to the primary down, or
   * the last check failed: a replica whose checks time out is not judged on its last lag).
   * @default no bound
   */
  maxLag: durationOption.optional(),
  /** `replicas`: reads go to replicas, the primary when none is left. `primary`: the other way round. @default 'replicas' */
  reads: z.enum(['replicas', 'primary']).default('replicas'),
});

/**
 * Failure-rate ejection (Envoy's failure-percentage ejection): catches an endpoint that fails
 * often but not `consecutiveFailures` times in a row (one call in two, say). Its calls are counted
 * over each `interval`; when the interval is over, an endpoint that took at least `requestVolume`
 * calls in it and failed at least `threshold` of them is ejected, if at least `minimumHosts`
 * endpoints took that many calls. The defaults are Envoy's.
 */
const failureRateSchema = z.strictObject({
  /** The share of an endpoint's calls in one interval that, failed, ejects it (Envoy: 85%). @default 0.85 */
  threshold: z
    .number()
    .gt(0, 'must be a share of the calls, above 0 and at most 1')
    .max(1, 'must be a share of the calls, above 0 and at most 1')
    .default(0.85),
  /** The calls an endpoint must take in one interval to be judged; fewer, it is not. @default 50 */
  requestVolume: z.number().int().positive().default(50),
  /**
   * How many endpoints must have taken `requestVolume` calls in the interval for any to be
   * judged: with fewer, no endpoint is ejected for its failure rate. @default 5
   */
  minimumHosts: z.number().int().positive().default(5),
  /** The time over which calls are counted, in ms; each interval is judged on its own. @default 10_000 */
  interval: timerDuration.default(10_000),
});

const ejectionSchema = z
  .strictObject({
    /** Consecutive failed calls that eject an endpoint. @default 5 */
    consecutiveFailures: z.number().int().positive().default(5),
    /**
     * Also eject an endpoint that fails `threshold` of its calls over an `interval` (Envoy's
     * failure-percentage ejection); `false` (the default) for none. `{}` takes Envoy's defaults.
     * @default false
     */
    failureRate: offOr(failureRateSchema).default(false),
    /** How long the first ejection lasts; each further one doubles it. @default 30_000 */
    baseTime: timerDuration.default(30_000),
    /** The longest an ejection lasts. @default 300_000 */
    maxTime: timerDuration.default(DEFAULT_MAX_EJECTION_MS),
    /** The largest share of endpoints ejected at once; one can always be. @default 0.5 */
    maxShare: share.default(0.5),
  })
  .refine((e) => e.maxTime >= e.baseTime, { message: 'must be >= ejection.baseTime', path: ['maxTime'] });

const budgetOption = z.custom<BudgetLike | false>(
  (v) =>
    v === false ||
    (typeof v === 'object' &&
      v !== null &&
      typeof (v as BudgetLike).deposit === 'function' &&
      typeof (v as BudgetLike).tryWithdraw === 'function'),
  { error: 'must be a retryBudget() from @holdfast/retry, or false' },
);

const retrySchema = z.strictObject({
  /** Tries per call in all, each on a different endpoint. @default 2 */
  maxAttempts: z.number().int().min(1).max(10).default(2),
  /**
   * The calls are safe to repeat (reads, PUTs, POSTs with an idempotency key): retry any failure,
   * timeouts and reset connections included. When false, retry only errors that prove the call
   * never reached the endpoint (connection refused, host unreachable, an open breaker).
   * @default false
   */
  idempotent: z.boolean().default(false),
  /**
   * Decides, instead of `idempotent`, whether an error may be retried on another endpoint; a
   * promise is awaited. One that throws or rejects retries nothing.
   */
  retryOn: fnOption<(error: unknown, attempt: number) => boolean | PromiseLike<boolean>>().optional(),
  /**
   * The retry budget shared by every call of this set (or of several sets), so that a total
   * outage does not multiply load; `false` for none.
   * @default a budget of its own: retries at most 20% of the calls of the last second, at least 5 a second
   */
  budget: budgetOption.optional(),
});

/** Validates the options of {@link failover}; {@link FailoverOptions} is inferred from it. */
export const failoverOptionsSchema = z
  .strictObject({
    /** The endpoints, at least one, with unique names. */
    endpoints: z.array(endpointOption).min(1),
    /**
     * `active-active`: spread calls over every available endpoint with `balancer`.
     * `active-passive`: send every call to one endpoint, the best of the highest priority.
     * @default 'active-active'
     */
    mode: z.enum(['active-active', 'active-passive']).default('active-active'),
    /** How active-active picks an endpoint. @default 'round-robin' */
    balancer: z.enum(['round-robin', 'least-connections', 'consistent-hash', 'p2c-ewma']).default('round-robin'),
    /** Active-passive: move back to a better endpoint by itself (`auto`) or only on `failback()`. @default 'auto' */
    failback: z.enum(['auto', 'manual']).default('auto'),
    /** Active-passive: how long a better endpoint must stay available before traffic fails back. @default 30_000 */
    holdDown: durationOption.max(MAX_TIMER_MS).default(30_000),
    /** Active health checks; none when absent. */
    health: healthSchema.optional(),
    /**
     * Role discovery, for databases and other primary/replica servers: writes go to the one
     * primary (the highest token wins; other primaries are fenced), reads to replicas. Calls say
     * which they are with `execute(fn, { intent: 'read' })`; a call that does not say is a write.
     */
    roles: rolesSchema.optional(),
    /** Passive outlier ejection, on consecutive failed calls (and, opted in, a failure rate); `false` to turn it off. */
    ejection: offOr(ejectionSchema).default({
      consecutiveFailures: 5,
      failureRate: false,
      baseTime: 30_000,
      maxTime: DEFAULT_MAX_EJECTION_MS,
      maxShare: 0.5,
    }),
    /**
     * Below `panicThreshold`: `all` spreads calls over every endpoint, healthy or not (what Envoy
     * does), `fail-fast` rejects them with `NoHealthyEndpointError`. Active-passive panics only
     * when no endpoint is available.
     * @default 'all'
     */
    panic: z.enum(['all', 'fail-fast']).default('all'),
    /** Active-active panics when fewer than this share of endpoints are available. @default 0.5 */
    panicThreshold: share.default(0.5),
    /** Retrying a failed call on another endpoint; `false` to turn it off. */
    retry: offOr(retrySchema).default({ maxAttempts: 2, idempotent: false }),
    /** A time limit on each try, in ms: the try's signal aborts and the call moves on. @default none */
    timeout: timerDuration.optional(),
    /**
     * Whether an error counts against the endpoint (for ejection and latency). Errors after the
     * caller aborted never count, nor do refusals by our own policies inside the call
     * (`isLocalRefusal()`: nothing reached the endpoint), but the endpoint's own open breaker or
     * inner set's (it cannot take calls). One that throws (or answers with a promise: the verdict is
     * needed at once) counts the error; the call still fails with the error it got, never with this function's.
     * @default every error
     */
    isFailure: fnOption<(error: unknown) => boolean>().optional(),
    /** p2c-ewma: the time over which old latency samples fade, in ms. @default 10_000 */
    decay: timerDuration.default(10_000),
    /** A source of numbers in [0, 1): jitter and random choices. @default Math.random */
    random: fnOption<() => number>().optional(),
    /** Shown as `source` on its events. @default 'failover' */
    name: nameOption.default('failover'),
    /** The bus its events go to. @default the global bus */
    bus: busOption.optional(),
    /** @default the real clock */
    clock: clockOption.optional(),
    /** Where the set lists itself for `healthReport()` and the dashboard, or `false`. @default core's `policies` */
    policies: policiesOption.optional(),
  })
  .superRefine((options, ctx) => {
    if (options.roles !== undefined && options.mode === 'active-passive') {
      ctx.addIssue({
        code: 'custom',
        path: ['mode'],
        message: "must be 'active-active' (the default) with roles: the roles decide where calls go",
      });
    }
    const seen = new Map<string, number>();
    for (const [i, endpoint] of options.endpoints.entries()) {
      const first = seen.get(endpoint.name);
      if (first !== undefined) {
        // Two names that differ only in a password: shown alike, events could not tell them apart.
        const hidden = endpoint.given !== options.endpoints[first]?.given ? ' once its secrets are hidden as ***' : '';
        const message = `is not unique${hidden}: endpoint ${first} has the same name`;
        ctx.addIssue({ code: 'custom', path: ['endpoints', i, 'name'], message });
      } else seen.set(endpoint.name, i);
    }
  });

/** Options of {@link failover}. */
export type FailoverOptions<T = unknown> = Omit<
  z.input<typeof failoverOptionsSchema>,
  'endpoints' | 'health' | 'roles'
> & {
  /** The endpoints: a string is both the name and the target. */
  readonly endpoints: readonly (string | EndpointOptions<T>)[];
  /** Active health checks; none when absent. */
  readonly health?: Omit<HealthOptions, 'check'> & {
    /** Passes unless it throws, rejects, returns `false` or outlives `timeout`. */
    readonly check: (endpoint: Endpoint<T>, signal: AbortSignal) => unknown;
  };
  /** Role discovery: writes to the one primary, reads to replicas; none when absent. */
  readonly roles?: Omit<RolesOptions, 'check'> & {
    /** Resolves to `{ role, token?, lag? }`; unreachable when it throws or times out. */
    readonly check: (
      endpoint: Endpoint<T>,
      signal: AbortSignal,
      settings: RoleCheckSettings,
    ) => RoleReport | PromiseLike<RoleReport>;
  };
};
/** Validates the options of a set's `eject(name, options)`; {@link EjectOptions} is inferred from it. */
export const ejectOptionsSchema = z.strictObject({
  /**
   * How long the endpoint stays out, in ms. Then, as after an ejection for failures, it takes one
   * call at a time until one succeeds, and is back.
   */
  durationMs: timerDuration,
  /** Why, as the `reason` of the `failover.eject` event (e.g. `anomaly`), credentials hidden. @default 'manual' */
  reason: z.string().min(1).max(100).transform(hideSecrets).default('manual'),
});
/** Options of a set's `eject(name, options)`. */
export type EjectOptions = z.input<typeof ejectOptionsSchema>;

/** One endpoint as given in the options. */
export type EndpointOptions<T = unknown> = Omit<z.input<typeof endpointObject>, 'target'> & { readonly target: T };
export type ParsedFailoverOptions = z.output<typeof failoverOptionsSchema>;
/** The `health` option: active health checks. */
export type HealthOptions = z.input<typeof healthSchema>;
/** The `roles` option: role discovery, read/write routing and fencing. */
export type RolesOptions = z.input<typeof rolesSchema>;
/** The `ejection` option: outlier ejection. */
export type EjectionOptions = z.input<typeof ejectionSchema>;
/** The `ejection.failureRate` option: ejection for a share of failed calls over an interval. */
export type FailureRateOptions = z.input<typeof failureRateSchema>;
/** The `retry` option: retries on another endpoint. */
export type FailoverRetryOptions = z.input<typeof retrySchema>;
/** `active-active` spreads calls over endpoints; `active-passive` sends them all to one. */
export type Mode = ParsedFailoverOptions['mode'];
/** How active-active picks an endpoint. */
export type BalancerName = ParsedFailoverOptions['balancer'];
