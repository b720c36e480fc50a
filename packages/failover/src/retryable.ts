import { BrokenCircuitError } from '@holdfast/core';

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
