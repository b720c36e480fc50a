import { BrokenCircuitError, hasCode } from '@holdfast/core';
import { isNonRetryable } from './errors.js';

/** The messages fetch implementations give the TypeError of a network failure. */
const networkMessages = new Set([
  'fetch failed', // undici (Node)
  'terminated', // undici, connection lost while reading the body
  'Failed to fetch', // Chromium
  'NetworkError when attempting to fetch resource.', // Firefox
  'Load failed', // Safari
  'Network request failed', // React Native, whatwg-fetch
]);

/** HTTP statuses worth another try: timeouts, rate limits and a server that is down or overloaded. */
const transientStatuses = new Set([408, 429, 500, 502, 503, 504]);

/** The HTTP status an error carries (`status`, `statusCode`, or on its `response`), if any. */
export function statusOf(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const e = error as { status?: unknown; statusCode?: unknown; response?: { status?: unknown; statusCode?: unknown } };
  const status = e.status ?? e.statusCode ?? e.response?.status ?? e.response?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

/** True for the TypeError fetch throws when the network failed (not for a TypeError from a bug). */
export function isNetworkError(error: unknown): boolean {
  // `fetch failed: connect ECONNREFUSED ...` is @holdfast/fetch's, naming the root cause.
  return (
    error instanceof TypeError && (networkMessages.has(error.message) || error.message.startsWith('fetch failed: '))
  );
}

/**
 * The default `retryOn.error`: true unless the error is an `AbortError`, a
 * `BrokenCircuitError`, an idempotency key reused with another payload
 * (`E_IDEMPOTENCY_MISMATCH`: it mismatches again) or whose run followed its caller's abort
 * (`E_IDEMPOTENCY_ABORTED`: refused for its ttlMs), a policy used after `dispose()` (`E_DISPOSED`:
 * it stays disposed), a 4xx other than 408 and 429, a TypeError
 * that is not a network failure (a bug does not heal), or marked with `nonRetryable()`.
 */
export function isTransientError(error: unknown): boolean {
  try {
    if (
      isNonRetryable(error) ||
      error instanceof BrokenCircuitError ||
      hasCode(error, 'E_IDEMPOTENCY_MISMATCH') ||
      hasCode(error, 'E_IDEMPOTENCY_ABORTED') ||
      hasCode(error, 'E_DISPOSED')
    )
      return false;
    if (error instanceof TypeError) return isNetworkError(error);
    if (typeof error === 'object' && error !== null && (error as { name?: unknown }).name === 'AbortError')
      return false;
    const status = statusOf(error);
    return status === undefined || status < 400 || status >= 500 || status === 408 || status === 429;
  } catch {
    // An error whose getters throw is none of the exceptions above: retried, like anything else thrown.
    return true;
  }
}

/** A fetch `Response`, or anything shaped like one. */
export interface ResponseLike {
  /** The HTTP status. */
  readonly status: number;
  /** Its headers; `Retry-After` is read from them. */
  readonly headers: { get(name: string): string | null };
}

/** True when `value` looks like a fetch Response: a numeric `status` and `headers.get()`. */
export function isResponseLike(value: unknown): value is ResponseLike {
  if (typeof value !== 'object' || value === null) return false;
  try {
    return (
      typeof (value as ResponseLike).status === 'number' && typeof (value as ResponseLike).headers?.get === 'function'
    );
  } catch {
    // A strict Proxy (an ORM row) that throws on unknown properties is a result, not a Response.
    return false;
  }
}

/** The default `retryOn.result`: a Response whose status is 408, 429, 500, 502, 503 or 504. */
export function isTransientResult(result: unknown): boolean {
  return isResponseLike(result) && transientStatuses.has(result.status);
}

/** The `code` an event gives a failed attempt: the error's code or name, or `HTTP 503` for a result. */
export function resultLabel(result: unknown): string {
  return isResponseLike(result) ? `HTTP ${result.status}` : 'result';
}

/** Frees the connection behind a Response (or anything with a cancellable `body`) dropped for a retry. */
export function discard(result: unknown): void {
  // null, undefined, a number: a poll's "not yet", nothing to free (reading `.body` would throw).
  if (typeof result !== 'object' || result === null) return;
  try {
    const body = (result as { body?: { cancel?: () => Promise<void> } | null }).body;
    if (typeof body?.cancel !== 'function' || (result as { bodyUsed?: boolean }).bodyUsed === true) return;
    body.cancel().catch(() => {});
  } catch {
    // A locked stream (whoever holds the reader frees it), or a getter that throws.
  }
}
