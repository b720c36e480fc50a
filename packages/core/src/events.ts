/**
 * Every event holdfast emits, in one place. docs/events.md describes each one; a test checks
 * that it lists every type here.
 */

/** The error code an event reports: a holdfast `code`, a Node system code, or the error's name. */
export type ErrorLabel = string | undefined;

/** Fields of each event, by type. Every event also has `type`, `source` and `time`. */
export interface EventFields {
  /** A `timeout()` policy's deadline passed. */
  timeout: { readonly timeout: number; readonly strategy: 'cooperative' | 'aggressive' };

  /** A breaker opened: calls are now rejected until `retryAt`. */
  'breaker.open': {
    readonly reason: 'failureRate' | 'slowCallRate' | 'consecutiveFailures' | 'halfOpenFailure' | 'manual' | 'restored';
    readonly failureRate: number;
    readonly retryAt: number | undefined;
  };
  /** A breaker lets probes through to test the downstream. */
  'breaker.halfOpen': Record<never, never>;
  /** A breaker closed: calls flow again. */
  'breaker.close': { readonly reason: 'probes' | 'manual' | 'restored' };
  /** A breaker was isolated (forced open) by hand. */
  'breaker.isolate': Record<never, never>;
  /** A breaker was disabled: it lets every call through and records nothing. */
  'breaker.disable': Record<never, never>;
  /** A call was refused because the breaker is open, isolated, or out of half-open probes. */
  'breaker.reject': { readonly state: 'open' | 'halfOpen' | 'isolated'; readonly retryAt: number | undefined };
  /** A call through a breaker succeeded. */
  'breaker.success': { readonly latency: number };
  /** A call through a breaker failed (as `isFailure` judged it). */
  'breaker.failure': { readonly latency: number; readonly code: ErrorLabel };
  /** A call through a breaker succeeded, but slower than `slowCall.duration`. */
  'breaker.slow': { readonly latency: number };

  /** A retry policy will try again after `delay` ms. */
  'retry.attempt': { readonly attempt: number; readonly delay: number; readonly code: ErrorLabel };
  /** A retry policy stopped trying and passed the last failure on. */
  'retry.giveUp': {
    readonly attempts: number;
    readonly reason: 'maxAttempts' | 'maxElapsed' | 'notRetryable' | 'aborted' | 'budget';
    readonly code: ErrorLabel;
  };
  /** A retry was refused by the retry budget. */
  'retry.budgetExhausted': { readonly attempt: number; readonly code: ErrorLabel };

  /** A key was claimed: the operation runs now. */
  'idempotency.claim': { readonly key: string };
  /** A completed key was seen again: the stored result was replayed. */
  'idempotency.replay': { readonly key: string };
  /** A key was seen while its first execution was still running. */
  'idempotency.conflict': { readonly key: string };
  /** A key was reused with a different request fingerprint. */
  'idempotency.mismatch': { readonly key: string };
  /** The idempotency store failed. */
  'idempotency.storeError': { readonly key: string; readonly code: ErrorLabel; readonly failOpen: boolean };

  /** An endpoint was ejected from its failover set until `until`. */
  'failover.eject': { readonly endpoint: string; readonly until: number; readonly ejections: number };
  /** An ejected endpoint was taken back into its set. */
  'failover.restore': { readonly endpoint: string };
  /** Traffic moved from one endpoint (or priority) to another. */
  'failover.switch': {
    readonly from: string | undefined;
    readonly to: string;
    readonly reason: 'failover' | 'failback' | 'manual';
  };
  /** Too few endpoints are healthy: the set entered (or left) panic. */
  'failover.panic': { readonly healthy: number; readonly total: number; readonly active: boolean };
  /** An active health check changed its verdict on an endpoint. */
  'health.change': { readonly endpoint: string; readonly healthy: boolean };
}

/** The name of every event. */
export type EventType = keyof EventFields;

/** The event of type `K`. */
export type EventOf<K extends EventType> = {
  readonly type: K;
  readonly source: string;
  readonly time: number;
} & EventFields[K];

/** Any holdfast event: a union discriminated on `type`. */
export type HoldfastEvent = { [K in EventType]: EventOf<K> }[EventType];

/** Every event type, at run time. */
export const eventTypes = [
  'timeout',
  'breaker.open',
  'breaker.halfOpen',
  'breaker.close',
  'breaker.isolate',
  'breaker.disable',
  'breaker.reject',
  'breaker.success',
  'breaker.failure',
  'breaker.slow',
  'retry.attempt',
  'retry.giveUp',
  'retry.budgetExhausted',
  'idempotency.claim',
  'idempotency.replay',
  'idempotency.conflict',
  'idempotency.mismatch',
  'idempotency.storeError',
  'failover.eject',
  'failover.restore',
  'failover.switch',
  'failover.panic',
  'health.change',
] as const satisfies readonly EventType[];

type Unlisted = Exclude<EventType, (typeof eventTypes)[number]>;
// Fails to compile when an event type is declared above but missing from `eventTypes`.
const everyTypeListed: [Unlisted] extends [never] ? true : Unlisted = true;
void everyTypeListed;

/** The label an event gives an error: its holdfast or system `code`, else its `name`. */
export function errorLabel(error: unknown): ErrorLabel {
  if (typeof error !== 'object' || error === null) return undefined;
  const { code, name } = error as { code?: unknown; name?: unknown };
  if (typeof code === 'string') return code;
  return typeof name === 'string' ? name : undefined;
}
