import { hideSecrets } from './redact.js';

/**
 * Every error holdfast throws extends {@link HoldfastError} and carries a stable `code`.
 * The catalogue of codes is docs/errors.md.
 */
export type ErrorCode =
  | 'E_CONFIG'
  | 'E_TIMEOUT'
  | 'E_CIRCUIT_OPEN'
  | 'E_RETRY_EXHAUSTED'
  | 'E_BUDGET_EXHAUSTED'
  | 'E_NO_HEALTHY_ENDPOINT'
  | 'E_NO_PRIMARY'
  | 'E_UNCONFIRMED_WRITE'
  | 'E_IDEMPOTENCY_CONFLICT'
  | 'E_IDEMPOTENCY_MISMATCH'
  | 'E_IDEMPOTENCY_ABORTED'
  | 'E_STORE_UNAVAILABLE'
  | 'E_IDEMPOTENCY_VALUE'
  | 'E_HTTP_STATUS'
  | 'E_DISPOSED'
  | 'E_INJECTED_FAULT'
  | 'E_DRILL_FAILED'
  | 'E_BULKHEAD_FULL'
  | 'E_RATE_LIMITED'
  | 'E_CONCURRENCY_LIMIT'
  | 'E_THROTTLED';

/** Every error code, at run time. docs/errors.md describes each one. */
export const errorCodes = [
  'E_CONFIG',
  'E_TIMEOUT',
  'E_CIRCUIT_OPEN',
  'E_RETRY_EXHAUSTED',
  'E_BUDGET_EXHAUSTED',
  'E_NO_HEALTHY_ENDPOINT',
  'E_NO_PRIMARY',
  'E_UNCONFIRMED_WRITE',
  'E_IDEMPOTENCY_CONFLICT',
  'E_IDEMPOTENCY_MISMATCH',
  'E_IDEMPOTENCY_ABORTED',
  'E_STORE_UNAVAILABLE',
  'E_IDEMPOTENCY_VALUE',
  'E_HTTP_STATUS',
  'E_DISPOSED',
  'E_INJECTED_FAULT',
  'E_DRILL_FAILED',
  'E_BULKHEAD_FULL',
  'E_RATE_LIMITED',
  'E_CONCURRENCY_LIMIT',
  'E_THROTTLED',
] as const satisfies readonly ErrorCode[];

type UnlistedCode = Exclude<ErrorCode, (typeof errorCodes)[number]>;
// Fails to compile when a code is added to ErrorCode but not to `errorCodes`.
const everyCodeListed: [UnlistedCode] extends [never] ? true : UnlistedCode = true;
void everyCodeListed;

const kBrands = Symbol.for('holdfast.error.brands');

type Branded = { [kBrands]?: readonly symbol[] };

/**
 * Base class of every holdfast error. `instanceof` is decided by a `Symbol.for` brand, not by
 * prototype identity, so it holds when two copies of @holdfast/core are installed.
 */
export class HoldfastError extends Error {
  /** The brand `instanceof` looks for. Every subclass declares its own. */
  static readonly brand: symbol = Symbol.for('holdfast.error.HoldfastError');

  /** True when `value` carries this class's brand: `instanceof` that holds across installed copies. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (typeof value !== 'object' || value === null) return false;
    const brands = (value as Branded)[kBrands];
    // `this` is the class `instanceof` was asked about: each subclass checks its own brand.
    // biome-ignore lint/complexity/noThisInStatic: dispatch on the subclass is the point
    return brands?.includes(this.brand) === true;
  }

  /** The class name, as a literal (minifiers do not change it). */
  override name = 'HoldfastError';
  /** The stable code of the error; docs/errors.md lists them all. */
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    Object.defineProperty(this, kBrands, { value: brandsOf(new.target), enumerable: false });
  }
}

const brandCache = new WeakMap<object, symbol[]>();

function brandsOf(ctor: object): symbol[] {
  let brands = brandCache.get(ctor);
  if (brands) return brands;
  brands = [];
  for (let c: object | null = ctor; c !== null && c !== Error; c = Object.getPrototypeOf(c)) {
    if (Object.hasOwn(c, 'brand')) brands.push((c as { brand: symbol }).brand);
  }
  brandCache.set(ctor, brands);
  return brands;
}

/**
 * True when `error` is a holdfast error with the given code, from any installed copy; in
 * TypeScript it narrows `error` so that `error.cause` and `error.code` can be read.
 */
export function hasCode<C extends ErrorCode>(error: unknown, code: C): error is HoldfastError & { readonly code: C } {
  return error instanceof HoldfastError && error.code === code;
}

/** One problem found in a factory's options. */
export interface ConfigIssue {
  /** Dotted path of the option, e.g. `backoff.maxDelay`; empty for the options object itself. */
  readonly path: string;
  /** Why the value at `path` was refused, e.g. `must be >= 1`. */
  readonly message: string;
  /** The value that was given at that path; absent when the input has no such path (a string given where the path reads a field of an object). */
  readonly value?: unknown;
}

/** Bad options given to a factory. The message names the factory, the option path and the value. */
export class HoldfastConfigError extends HoldfastError {
  static override readonly brand = Symbol.for('holdfast.error.HoldfastConfigError');
  override name = 'HoldfastConfigError';
  /** Every problem found, not just the first. */
  readonly issues: readonly ConfigIssue[];

  constructor(owner: string, issues: readonly ConfigIssue[]) {
    const lines = issues.map(
      (i) => `${i.path || '(options)'} ${i.message}${'value' in i ? ` (got ${describe(i.value)})` : ''}`,
    );
    super('E_CONFIG', `${owner}: ${lines.join('; ')}`);
    this.issues = issues;
  }
}

/** A call ran past its time limit. */
export class TimeoutError extends HoldfastError {
  static override readonly brand = Symbol.for('holdfast.error.TimeoutError');
  override name = 'TimeoutError';
  /** The limit, in milliseconds. */
  readonly timeout: number;

  constructor(source: string, timeout: number, options?: { cause?: unknown }) {
    super('E_TIMEOUT', `${source}: timed out after ${timeout} ms`, options);
    this.timeout = timeout;
  }
}

/**
 * A call one of our policies refused before it reached the downstream: a full bulkhead, a rate
 * or concurrency limit, client-side throttling, an open breaker, an idempotency key another call
 * holds. It says nothing of the downstream's health, so a breaker outside does not count it
 * (`'ignored'`), and a retry after it draws nothing from the retry budget: the refused call sent
 * nothing. Every such error extends this class; {@link isLocalRefusal} tells them apart.
 */
export abstract class LocalRefusalError extends HoldfastError {
  static override readonly brand: symbol = Symbol.for('holdfast.error.LocalRefusalError');
}

/**
 * The codes of the refusals an older copy made without LocalRefusalError's brand: those from
 * before that class, and a failover set's, which extended it later. A code added here is one
 * that only a refusal ever carried (every class that makes a local refusal must be listed by its
 * code, or by its brand for a shared code, or an older copy's is counted as a failure).
 */
const olderRefusals = new Set<string>([
  'E_CIRCUIT_OPEN',
  'E_BULKHEAD_FULL',
  'E_RATE_LIMITED',
  'E_CONCURRENCY_LIMIT',
  'E_THROTTLED',
  'E_IDEMPOTENCY_CONFLICT',
  'E_IDEMPOTENCY_MISMATCH',
  'E_NO_HEALTHY_ENDPOINT',
  'E_NO_PRIMARY',
]);

/**
 * True for a {@link LocalRefusalError} (from any installed copy; an older one's refusals, from
 * before this class, by their codes), and for a holdfast error whose `refusedLocally` is true
 * (a retry that gave up when every attempt had been refused): the call was refused by one of our
 * policies before it reached the downstream. The one definition the breaker and retry use.
 */
export function isLocalRefusal(error: unknown): error is LocalRefusalError {
  try {
    if (error instanceof LocalRefusalError) return true;
    if (!(error instanceof HoldfastError)) return false;
    // A give-up after nothing but refusals (retry's RetryExhaustedError): nothing was sent.
    if ((error as { refusedLocally?: unknown }).refusedLocally === true) return true;
    // An older copy's refusal: by its code, and E_STORE_UNAVAILABLE only from a Redis limiter.
    return error.code === 'E_STORE_UNAVAILABLE'
      ? (error as Branded)[kBrands]?.includes(Symbol.for('holdfast.error.LimitStoreUnavailableError')) === true
      : olderRefusals.has(error.code);
  } catch {
    return false; // a Proxy whose getters throw is no refusal of ours
  }
}

/**
 * A circuit breaker refused the call. Declared here, not in @holdfast/breaker, so that
 * retry and failover recognise it without importing the breaker.
 */
export class BrokenCircuitError extends LocalRefusalError {
  static override readonly brand = Symbol.for('holdfast.error.BrokenCircuitError');
  override name = 'BrokenCircuitError';
  /** When to call again (epoch ms): when an open breaker lets a probe through, or a half-open one expects its probe back. */
  readonly retryAt: number | undefined;

  constructor(source: string, retryAt: number | undefined, options?: { cause?: unknown }) {
    const when = retryAt === undefined ? 'until closed by hand' : `until ${new Date(retryAt).toISOString()}`;
    super('E_CIRCUIT_OPEN', `${source}: circuit is open ${when}`, options);
    this.retryAt = retryAt;
  }
}

/** A stateful policy was used after `dispose()`. */
export class DisposedError extends HoldfastError {
  static override readonly brand = Symbol.for('holdfast.error.DisposedError');
  override name = 'DisposedError';

  constructor(source: string) {
    super('E_DISPOSED', `${source}: used after dispose()`);
  }
}

function describe(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    // A BigInt or a cycle inside: String() below says what it can.
  }
  try {
    text ??= String(value);
  } catch {
    // A null-prototype object has no toString; a Proxy whose traps throw (a revoked one) has no
    // tag either: describing the bad value must not throw instead.
    try {
      text = Object.prototype.toString.call(value);
    } catch {
      text = 'a value that cannot be read';
    }
  }
  // Hidden before cut: a cut that falls in a password leaves no `@` to find it by.
  text = hideSecrets(text);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
