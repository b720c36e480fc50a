import { Buffer } from 'node:buffer';
import { decodeValue, encodeValue } from './codec.js';
import { IdempotencyValueError } from './errors.js';

/** An HTTP response as the middleware stores it: replayed byte for byte. */
export interface StoredResponse {
  /** The HTTP status. */
  readonly status: number;
  /** Header names as sent; a header sent several times is an array. Leave credentials out. */
  readonly headers: Readonly<Record<string, string | readonly string[]>>;
  /** The body's bytes. */
  readonly body: Uint8Array;
}

/**
 * What a completed key replays: the value a function returned (JSON values and bytes, see
 * README), an HTTP response, or `aborted`: the function threw after its caller aborted, so its
 * effect may have happened, and a repeat gets `E_IDEMPOTENCY_ABORTED` instead of a second run.
 */
export type StoredOutcome =
  | { readonly kind: 'value'; readonly value: unknown }
  | ({ readonly kind: 'response' } & StoredResponse)
  | { readonly kind: 'aborted' };

/** A key whose operation finished. Its key, fingerprint and `createdAt` were fixed by the first claim. */
export interface CompletedRecord {
  /** Always `completed`: only finished keys are records. */
  readonly status: 'completed';
  /** The idempotency key (scoped, as the store saw it). */
  readonly key: string;
  /** The fingerprint of the request that first claimed the key. */
  readonly fingerprint: string;
  /** When the key was first claimed (epoch ms, the store's clock). */
  readonly createdAt: number;
  /** When the operation finished (epoch ms, the store's clock). */
  readonly completedAt: number;
  /** When the record is forgotten and the key may run again. */
  readonly expiresAt: number;
  /** What a replay of the key returns. */
  readonly outcome: StoredOutcome;
}

/** What `claim()` found. */
export type ClaimResult =
  /** The caller owns the key until its lease ends. `takeover`: a previous owner's lease ran out. */
  | { readonly status: 'claimed'; readonly token: string; readonly takeover: boolean }
  /** Another caller owns the key; its lease ends in `retryAfterMs`. */
  | { readonly status: 'inProgress'; readonly retryAfterMs: number }
  /** The key finished: replay `record.outcome`. */
  | { readonly status: 'completed'; readonly record: CompletedRecord }
  /** The key is in use with a different fingerprint. */
  | { readonly status: 'mismatch' };

/**
 * Where idempotency records live. Each step is one round trip and atomic:
 * - `claim` creates an in-progress record with a lease and a fresh fencing token, or takes over
 *   one whose lease has ended (compare-and-set: only one caller can win), or reports what is there.
 * - `complete` stores the outcome only if `token` still owns the record, and returns whether it did:
 *   an owner whose lease ended and was taken over can never overwrite the new owner.
 * - `release` deletes the record only if `token` still owns it, so a failed call can be retried.
 * - `extend` (optional) renews a running claim's lease only if `token` still owns it, so a live
 *   run slower than `leaseMs` keeps its key. A store without it keeps today's fixed lease: a run
 *   still going after `leaseMs` can be taken over, and its effect run a second time.
 *
 * Every record has a deadline: an in-progress record is kept for two leases (long enough to
 * report a takeover), a completed one for `ttlMs`.
 */
export interface IdempotencyStore {
  /** What `idempotent()` does when this store fails. @default 'fail-closed' */
  readonly onStoreError?: 'fail-closed' | 'fail-open';
  /**
   * Claims `key` for `leaseMs`, or reports who has it: an in-progress owner, a completed record, a
   * mismatch.
   */
  claim(key: string, fingerprint: string, leaseMs: number): Promise<ClaimResult>;
  /** Stores `outcome` for `ttlMs` if `token` still owns `key`; false when it no longer does. */
  complete(key: string, token: string, outcome: StoredOutcome, ttlMs: number): Promise<boolean>;
  /** Deletes the record if `token` still owns `key`, so a retry runs again; false when it no longer does. */
  release(key: string, token: string): Promise<boolean>;
  /**
   * Optional. Renews the lease of `key` to `leaseMs` from now (and its in-progress record's
   * deadline to two leases) if `token` still owns it and it has not completed; false when it
   * does not (taken over, completed, released, expired). Never brings back a record that is gone.
   */
  extend?(key: string, token: string, leaseMs: number): Promise<boolean>;
}

/** An outcome as stores keep it: a JSON text and, for responses, the body's bytes apart. */
export interface EncodedOutcome {
  readonly kind: StoredOutcome['kind'];
  readonly meta: string;
  readonly body: Buffer;
}

const NO_BYTES = Buffer.alloc(0);

/** Checks and encodes an outcome before any state changes; throws {@link IdempotencyValueError}. */
export function encodeOutcome(outcome: StoredOutcome): EncodedOutcome {
  if (outcome?.kind === 'value') return { kind: 'value', meta: encodeValue(outcome.value), body: NO_BYTES };
  // No text: a reader from before this kind fails to parse it rather than replay it as a value.
  if (outcome?.kind === 'aborted') return { kind: 'aborted', meta: '', body: NO_BYTES };
  const { status, headers, body } = checkResponse(outcome);
  return {
    kind: 'response',
    meta: JSON.stringify({ status, headers }),
    body: Buffer.from(body), // a copy: the caller may reuse its buffer
  };
}

/** A fresh copy of a stored outcome. */
export function decodeOutcome(encoded: EncodedOutcome): StoredOutcome {
  if (encoded.kind === 'value') return { kind: 'value', value: decodeValue(encoded.meta) };
  if (encoded.kind === 'aborted') return { kind: 'aborted' };
  const { status, headers } = JSON.parse(encoded.meta) as Pick<StoredResponse, 'status' | 'headers'>;
  return { kind: 'response', status, headers, body: Buffer.from(encoded.body) };
}

/**
 * Checks that an outcome is a response a store can keep; throws {@link IdempotencyValueError}
 * naming what is wrong.
 */
export function checkResponse(outcome: StoredOutcome): StoredResponse {
  if (outcome?.kind !== 'response') {
    throw new IdempotencyValueError('outcome', "kind must be 'value', 'response' or 'aborted'");
  }
  checkResponseParts(outcome.status, outcome.headers, outcome.body);
  return outcome;
}

/** {@link checkResponse} of a response's parts, without an outcome object around them. */
export function checkResponseParts(status: unknown, headers: unknown, body: unknown): void {
  checkStatusAndBody(status, body);
  if (typeof headers !== 'object' || headers === null)
    throw new IdempotencyValueError('response.headers', 'must be an object');
  for (const name of Object.keys(headers)) {
    const v = (headers as Record<string, unknown>)[name];
    if (typeof v === 'string') continue;
    let ok = Array.isArray(v);
    if (ok) for (const item of v as readonly unknown[]) ok &&= typeof item === 'string';
    if (!ok) throw new IdempotencyValueError(`response.headers.${name}`, 'must be a string or an array of strings');
  }
}

/** {@link checkResponseParts} of a response whose headers are known to be checked already. */
export function checkStatusAndBody(status: unknown, body: unknown): void {
  if (!Number.isInteger(status) || (status as number) < 100 || (status as number) > 599) {
    throw new IdempotencyValueError('response.status', `${String(status)} is not an HTTP status (100-599)`);
  }
  if (!(body instanceof Uint8Array)) throw new IdempotencyValueError('response.body', 'must be a Uint8Array or Buffer');
}

/** A copy of checked response headers, lists copied too. */
export function copyHeaders(headers: StoredResponse['headers']): Record<string, string | string[]> {
  const copy: Record<string, string | string[]> = {};
  for (const name of Object.keys(headers)) {
    const v = headers[name] as string | readonly string[];
    setHeader(copy, name, typeof v === 'string' ? v : [...v]);
  }
  return copy;
}

/** Sets a header; one named `__proto__` stays a header (JSON.parse makes it an own property too). */
export function setHeader<V>(headers: Record<string, V>, name: string, value: V): void {
  if (name === '__proto__') {
    Object.defineProperty(headers, name, { value, enumerable: true, writable: true, configurable: true });
  } else headers[name] = value;
}

/** The characters checked response headers take (names and values, with a few for punctuation, about what their JSON takes). */
export function headerChars(headers: StoredResponse['headers']): number {
  let chars = 2;
  for (const name of Object.keys(headers)) {
    const v = headers[name] as string | readonly string[];
    if (typeof v === 'string') chars += name.length + v.length + 6;
    else {
      chars += name.length + 6;
      for (const item of v) chars += item.length + 3;
    }
  }
  return chars;
}
