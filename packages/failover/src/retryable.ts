import { BrokenCircuitError, isLocalRefusal } from '@holdfast/core';
import { NoHealthyEndpointError, NoPrimaryError } from './errors.js';

/** Error codes that prove a call never reached its endpoint: repeating it elsewhere is safe. */
const neverReachedCodes = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
  'E_CIRCUIT_OPEN',
]);

/**
 * What ioredis rejects a command with when its connection is not ready and its offline queue is
 * off (as a failover set wants): the command was never written. Sentinel closes every client
 * connection of the servers it promotes or reconfigures, so reads met it on every failover.
 */
const ioredisNotSent = "Stream isn't writeable and enableOfflineQueue options is false";

/**
 * True when the error, or one it wraps (`cause`, `AggregateError.errors`), says the call never
 * reached the endpoint. fetch reports a refused connection as `TypeError: fetch failed` whose
 * cause has `code: 'ECONNREFUSED'`.
 */
export function neverReached(error: unknown, depth = 0): boolean {
  if (typeof error !== 'object' || error === null || depth > 5) return false;
  if (error instanceof BrokenCircuitError) return true;
  if ((error as { message?: unknown }).message === ioredisNotSent) return true;
  const { code, cause, errors } = error as { code?: unknown; cause?: unknown; errors?: unknown };
  if (typeof code === 'string' && neverReachedCodes.has(code)) return true;
  if (Array.isArray(errors) && errors.length > 0 && errors.every((e) => neverReached(e, depth + 1))) return true;
  return neverReached(cause, depth + 1);
}

/**
 * A refusal inside the call by a policy of the endpoint's own: its breaker, open because its
 * calls failed (alone, or the last of a retry's attempts, all refused), or a set of its own (a
 * region's) with nothing left to call. It says the endpoint cannot take calls now, and counts
 * against it, where a shared limit's (a bulkhead, a rate limiter, an idempotency key) says
 * nothing of it. Ignored, a dead endpoint behind a breaker that opened before the set ejected it
 * stayed in rotation, every call to it refused; its probe refused, it took every call first.
 */
export function refusedByEndpoint(error: unknown, depth = 0): boolean {
  if (typeof error !== 'object' || error === null || depth > 5) return false;
  if (error instanceof BrokenCircuitError || error instanceof NoHealthyEndpointError || error instanceof NoPrimaryError)
    return true;
  return isLocalRefusal(error) && refusedByEndpoint((error as { cause?: unknown }).cause, depth + 1);
}
