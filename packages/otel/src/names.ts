/**
 * Metric and attribute names, in the style of OpenTelemetry's semantic conventions: dotted
 * lower-case namespaces, snake_case words, durations in seconds, counts with `{unit}`
 * annotations, no `_total` suffix, and the standard `error.type` for error codes.
 */
export const metricNames = {
  breakerCalls: 'holdfast.breaker.calls',
  breakerSlowCalls: 'holdfast.breaker.slow_calls',
  breakerCallDuration: 'holdfast.breaker.call.duration',
  breakerTransitions: 'holdfast.breaker.transitions',
  breakerState: 'holdfast.breaker.state',
  retryAttempts: 'holdfast.retry.attempts',
  retryDelay: 'holdfast.retry.delay',
  retryGiveUps: 'holdfast.retry.give_ups',
  retryBudgetRejections: 'holdfast.retry.budget.rejections',
  retryBudgetBalance: 'holdfast.retry.budget.balance',
  timeouts: 'holdfast.timeouts',
  idempotencyEvents: 'holdfast.idempotency.events',
  failoverSwitches: 'holdfast.failover.switches',
  failoverEjections: 'holdfast.failover.ejections',
  failoverEndpointUp: 'holdfast.failover.endpoint.up',
  failoverEndpointInFlight: 'holdfast.failover.endpoint.in_flight',
  anomalyScore: 'holdfast.anomaly.score',
  anomalyDetections: 'holdfast.anomaly.detections',
  chaosInjections: 'holdfast.chaos.injections',
  chaosToxicsActive: 'holdfast.chaos.toxics.active',
  limitRejections: 'holdfast.limit.rejections',
  rateLimitStoreErrors: 'holdfast.rate_limit.store_errors',
  bulkheadRunning: 'holdfast.bulkhead.running',
  bulkheadQueued: 'holdfast.bulkhead.queued',
  bulkheadCapacity: 'holdfast.bulkhead.capacity',
  concurrencyLimit: 'holdfast.concurrency.limit',
  concurrencyInFlight: 'holdfast.concurrency.in_flight',
  throttleProbability: 'holdfast.throttle.probability',
  hedgeAttempts: 'holdfast.hedge.attempts',
  hedgeBudgetRejections: 'holdfast.hedge.budget.rejections',
  fallbacks: 'holdfast.fallbacks',
} as const;

/** Attribute names on holdfast's metrics and span events. */
export const attributeNames = {
  /** The `source` of the event: the policy's name. */
  policy: 'holdfast.policy.name',
  /** What became of a call through a breaker: `success`, `failure`, `rejected`. */
  outcome: 'holdfast.outcome',
  /** Which idempotency event: `claim`, `replay`, `conflict`, `mismatch`, `release`, `store_error`... */
  idempotencyEvent: 'holdfast.idempotency.event',
  /** The error's code or name (the event's `code` field). Standard OpenTelemetry attribute. */
  errorType: 'error.type',
  /** A breaker state: `closed`, `open`, `halfOpen`, `isolated`, `disabled`. */
  breakerState: 'holdfast.breaker.state',
  /** Why a retry policy gave up: `maxAttempts`, `maxElapsed`, `retryAfter`, `notRetryable`, `aborted`, `budget`, `disposed`. */
  retryReason: 'holdfast.retry.reason',
  /** On a span: the last attempt a retry policy scheduled (2 for the first retry). */
  retryAttempt: 'holdfast.retry.attempt',
  /** The strategy of the timeout that fired: `cooperative` or `aggressive`. */
  timeoutStrategy: 'holdfast.timeout.strategy',
  /** Why traffic moved: `failover`, `failback`, `manual`. */
  failoverReason: 'holdfast.failover.reason',
  /** The name of the endpoint concerned. */
  endpoint: 'holdfast.endpoint.name',
  /** What an anomaly watch watches: a breaker, endpoint or policy name. */
  anomalyKey: 'holdfast.anomaly.key',
  /** The metric an anomaly score is for (`all` for the key's highest), or that departed. */
  anomalyMetric: 'holdfast.anomaly.metric',
  /** Which detector raised an anomaly: `baseline` or `forest`. */
  anomalyDetector: 'holdfast.anomaly.detector',
  /** What a chaos policy injected: `latency`, `fault`, `outcome`, `behavior`, `fetch`. */
  chaosKind: 'holdfast.chaos.kind',
  /** A fault proxy toxic's type: `latency`, `reset`, `blackhole`... */
  chaosToxic: 'holdfast.chaos.toxic',
  /** Which limit refused a call: `bulkhead`, `rate_limit`, `concurrency`, `throttle`. */
  limitKind: 'holdfast.limit.kind',
  /**
   * Why it refused: `full` or `queue_timeout` (bulkhead), `rate_limited`, `concurrency_limit`,
   * `throttled`.
   */
  limitReason: 'holdfast.limit.reason',
  /** On a Redis rate limiter's store errors: whether the call went on without a decision. */
  failOpen: 'holdfast.rate_limit.fail_open',
  /** What sent a hedge: `delay` (the hedge delay ran out) or `failure` (an attempt failed). */
  hedgeTrigger: 'holdfast.hedge.trigger',
  /** What a fallback replaced: `failure` or `result`. */
  fallbackReason: 'holdfast.fallback.reason',
} as const;

/** Histogram buckets in seconds: 1 ms to 30 s. */
export const durationBuckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
