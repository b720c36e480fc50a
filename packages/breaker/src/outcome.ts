import { isLocalRefusal } from '@holdfast/core';

/** What a breaker makes of a call: it counts against the downstream, for it, or not at all. */
export type Outcome = 'success' | 'failure' | 'ignored';

/** How a call settled, as `isFailure` sees it. */
export type Settled = { readonly ok: true; readonly result: unknown } | { readonly ok: false; readonly error: unknown };

/**
 * Judges a settled call. `true` and `false` are read as `'failure'` and `'success'`, so an
 * opossum `errorFilter` ports over as `({ ok, error }) => ok || !errorFilter(error)`.
 */
export type IsFailure = (settled: Settled) => Outcome | boolean;

/**
 * The default judge. Not the downstream's fault, so not a failure: a 4xx answer (a `Response`,
 * or an error carrying `status`, `statusCode` or `response.status`), except 408 and 429, which
 * say the downstream is overloaded. Ignored: the caller's own abort, and a refusal by one of
 * our policies inside the breaker (`isLocalRefusal`: a bulkhead, rate or concurrency limiter,
 * throttle, inner breaker or idempotency key that refused the call before it reached the
 * downstream; a retry that met nothing else, `refusedLocally`). Everything else that throws,
 * and a 5xx `Response`, is a failure: timeouts and exhausted retries or budgets included.
 */
export function defaultIsFailure(settled: Settled): Outcome {
  if (settled.ok) {
    const result = settled.result;
    if (typeof Response === 'function' && result instanceof Response) return judgeStatus(result.status);
    return 'success';
  }
  const error = settled.error;
  // Refused by one of our policies (a bulkhead, limiter, throttle, inner breaker) before it
  // reached the downstream: counted, a burst that filled a bulkhead opened the breaker.
  if (isLocalRefusal(error)) return 'ignored';
  if (typeof error === 'object' && error !== null) {
    if ((error as { name?: unknown }).name === 'AbortError') return 'ignored';
    const status = statusOf(error);
    if (status !== undefined && status < 500) return judgeStatus(status);
  }
  return 'failure';
}

function judgeStatus(status: number): Outcome {
  if (status >= 500 || status === 408 || status === 429) return 'failure';
  return 'success';
}

function statusOf(error: object): number | undefined {
  const e = error as { status?: unknown; statusCode?: unknown; response?: { status?: unknown } };
  if (typeof e.status === 'number') return e.status;
  if (typeof e.statusCode === 'number') return e.statusCode;
  const nested = e.response?.status;
  return typeof nested === 'number' ? nested : undefined;
}

/** Reads what an `isFailure` returned; anything else is a mistake of the caller's. */
export function toOutcome(value: Outcome | boolean): Outcome {
  if (value === true) return 'failure';
  if (value === false) return 'success';
  if (value === 'success' || value === 'failure' || value === 'ignored') return value;
  throw new TypeError(`isFailure returned ${String(value)}: expected 'success', 'failure', 'ignored' or a boolean`);
}
