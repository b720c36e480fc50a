import { HoldfastError, LocalRefusalError } from '@holdfast/core';

/**
 * No endpoint could take the call: all are drained or avoided, or panic is `fail-fast`. The set
 * refused it before it reached any endpoint, so it is a local refusal (`isLocalRefusal()`): a
 * breaker around the set does not count it (the failures that led to it were counted when they
 * happened), and a retry after it draws nothing from its budget.
 */
export class NoHealthyEndpointError extends LocalRefusalError {
  static override readonly brand = Symbol.for('holdfast.error.NoHealthyEndpointError');
  override name = 'NoHealthyEndpointError';
  /** How many endpoints were available. */
  readonly healthy: number;
  /** How many endpoints the set has. */
  readonly total: number;

  /** `why`: what kept each endpoint from the call (a read under `maxLag`: roles and lags), no secret. */
  constructor(source: string, healthy: number, total: number, options?: { cause?: unknown }, why?: string) {
    super(
      'E_NO_HEALTHY_ENDPOINT',
      `${source}: no healthy endpoint can take the call (${healthy} of ${total} available${why === undefined ? '' : `; ${why}`})`,
      options,
    );
    this.healthy = healthy;
    this.total = total;
  }
}

/**
 * A write found no primary to go to, so it was not sent: none discovered yet, the primary
 * unreachable, ejected or drained, or two primaries tied. `cause` is why the last primary was
 * lost, when that is known; `roles` says what each endpoint was. A local refusal
 * (`isLocalRefusal()`), as {@link NoHealthyEndpointError} is: a breaker around the set does not
 * count it (the writes that failed on the lost primary were counted when they failed), so it
 * takes writes again as soon as a primary is found.
 */
export class NoPrimaryError extends LocalRefusalError {
  static override readonly brand = Symbol.for('holdfast.error.NoPrimaryError');
  override name = 'NoPrimaryError';
  /** Each endpoint's discovered role when the write was refused, e.g. `{ 'db-1': 'unreachable' }`. */
  readonly roles: Readonly<Record<string, string>>;

  constructor(source: string, roles: Readonly<Record<string, string>>, detail: string, options?: { cause?: unknown }) {
    super('E_NO_PRIMARY', `${source}: no primary to write to, the write was not sent (${detail})`, options);
    this.roles = roles;
  }
}

/**
 * A write was answered by an endpoint after the set stopped taking it for the primary (its role
 * checks went unanswered, or another endpoint's promotion outranked it), and asking its role
 * again did not show it primary: the write may have been applied there and be lost when it is
 * turned into a replica. Treat it as a timeout: the outcome is unknown.
 */
export class UnconfirmedWriteError extends HoldfastError {
  static override readonly brand = Symbol.for('holdfast.error.UnconfirmedWriteError');
  override name = 'UnconfirmedWriteError';
  /** The endpoint that answered. */
  readonly endpoint: string;
  /** Its discovered role when the write failed: `fenced`, `replica`, `unreachable`... */
  readonly role: string;

  constructor(source: string, endpoint: string, role: string, options?: { cause?: unknown }) {
    super(
      'E_UNCONFIRMED_WRITE',
      `${source}: ${endpoint} answered the write after it stopped being the primary (now ${role}): it may be lost`,
      options,
    );
    this.endpoint = endpoint;
    this.role = role;
  }
}
