import { BreakerRegistry, breakerRegistry } from '@holdfast/breaker';
import {
  type Bus,
  type CallContext,
  type Clock,
  DisposedError,
  elapsedTime,
  bus as globalBus,
  type HedgePolicy,
  HoldfastConfigError,
  hedge,
  type JsonValue,
  type Policy,
  parseOptions,
  realClock,
  TimeoutError,
  timeout,
} from '@holdfast/core';
import { type Failover, type FailoverCallRetry, failover, neverReached } from '@holdfast/failover';
import { adaptiveConcurrency, bulkhead } from '@holdfast/limit';
import {
  isNetworkError,
  isNonRetryable,
  isTransientError,
  nonRetryable,
  type RetryBudget,
  retry,
  retryBudget,
} from '@holdfast/retry';
import { HttpError } from './errors.js';
import { type ParsedFetchOptions, type ResilientFetchOptions, resilientFetchOptionsSchema } from './options.js';
import { Redactor } from './redact.js';
import {
  absoluteUrl,
  attemptInit,
  discard,
  type FetchInput,
  hostOfPath,
  isSafeToRepeat,
  joinPath,
  type Plan,
  planOf,
  rebase,
  restUnder,
  signalOf,
} from './request.js';

/** `fetch`'s own signature. */
export type FetchFunction = (input: FetchInput, init?: RequestInit) => Promise<Response>;

/** What {@link resilientFetch} returns: a fetch, with the state behind it. */
export interface ResilientFetch extends FetchFunction {
  /** The per-host breakers and limiters, the failover set, the budget and the hedge, as plain JSON. */
  snapshot(): JsonValue;
  /**
   * Ends the calls still waiting for their response, at once, with `DisposedError`
   * (`E_DISPOSED`): a request on the wire is aborted, and a call waiting to send again (a
   * Retry-After, a backoff, a hedge's delay, a place behind the per-host limit, a Request's body
   * being read) sends nothing more. A response already returned is the caller's: its body reads
   * on, within `timeout.total`. Calls made afterwards reject with `E_DISPOSED`, sending nothing.
   * Stops the timers of what this fetch made itself (breakers, limiters, failover set, budget, hedge).
   */
  dispose(): void;
}

const defaultStatuses = [408, 429, 502, 503, 504];

/** A per-host limiter: a bulkhead or an adaptive concurrency limiter. */
interface Limiter extends Policy {
  snapshot(): unknown;
  dispose(): void;
}

/** A per-host limiter refused the request here, before it was sent: it may go to another host, never again to this one. */
function refusedHere(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'E_BULKHEAD_FULL' || code === 'E_CONCURRENCY_LIMIT';
}

/**
 * undici's reasons for refusing a request: a redirect in a loop or with `redirect: 'error'`
 * ("redirect count exceeded", "unexpected redirect"), a Location with credentials ("cross origin
 * not allowed") or not http(s) ("URL scheme must be a HTTP(S) scheme"), or a URL of a scheme it
 * does not fetch (`user:42`, `ftp://h/x`: "unknown scheme"). Nothing was sent, nothing will be.
 */
const refusedRedirect = /redirect|cross origin not allowed|URL scheme must be|^unknown scheme$/i;
/**
 * Requests fetch refused: a redirect it would not follow, or a request it would not send (a GET
 * with a body, TRACE, a stream body without duplex). Never retried, never a failure of the host.
 */
const refusedByFetch = new WeakSet<object>();
/**
 * Answers fetch could not take (headers past its limit): the host answered, and would answer
 * this request so again. As a 500 is: never retried, held against the host's breaker, not
 * counted by a failover set (which never sees a 500 as a failure).
 */
const overflowed = new WeakSet<object>();
/**
 * Failures of a redirect's target on another origin (its refused connection, its 503): the host
 * that redirected answered. Held against neither its breaker nor its base URL.
 */
const elsewhere = new WeakSet<object>();
/** A hedge's 409 for its own call's key, still running: says nothing of the endpoint's health. */
const ownDuplicates = new WeakSet<object>();
/**
 * A retry's 409 with Retry-After for its own call's key, which an earlier attempt of the call
 * (given up: a per-try timeout) still holds on the server: come back later for its response.
 * Retried (as Retry-After says), never a failure of the endpoint.
 */
const ownStillRunning = new WeakSet<object>();
/**
 * A limiter of ours refusing, a request fetch would not send, a hedge finding its own key running:
 * nothing said of the endpoint, whatever a failover set's `isFailure` would make of it. Nor is an
 * answer fetch could not take its to count, as a 500 is not: the host's breaker counts both.
 */
function saysNothingOfHost(error: unknown): boolean {
  const e = error as object;
  return (
    refusedHere(error) ||
    ownDuplicates.has(e) ||
    ownStillRunning.has(e) ||
    refusedByFetch.has(e) ||
    overflowed.has(e) ||
    elsewhere.has(e)
  );
}
/** How many attempts its call had sent when an attempt failed: no call sends more than `maxAttempts`. */
const sentBy = new WeakMap<object, number>();

/**
 * `fetch` with the defaults a service wants: a per-try and a total timeout, retries of what is
 * safe to repeat (with jitter, Retry-After and a retry budget), a circuit breaker per host, and
 * failover over several base URLs.
 *
 * @example
 * const http = resilientFetch();
 * const res = await http('https://api.example.com/orders/42');
 */
export function resilientFetch(options: ResilientFetchOptions = {}): ResilientFetch {
  const client = new Client(parse(options));
  const fetch = ((input: FetchInput, init?: RequestInit) => client.fetch(input, init)) as ResilientFetch;
  fetch.snapshot = () => client.snapshot();
  fetch.dispose = () => client.dispose();
  return fetch;
}

/** The options parsed; a refused URL is shown redacted, as everywhere else, never with its password. */
function parse(options: ResilientFetchOptions): ParsedFetchOptions {
  try {
    return parseOptions('resilientFetch', resilientFetchOptionsSchema, options);
  } catch (error) {
    if (!(error instanceof HoldfastConfigError)) throw error;
    const redact = new Redactor([]);
    const hide = (value: unknown): unknown =>
      typeof value === 'string' ? redact.url(value) : Array.isArray(value) ? value.map(hide) : value;
    throw new HoldfastConfigError(
      'resilientFetch',
      error.issues.map((issue) => ({ ...issue, value: hide(issue.value) })),
    );
  }
}

class Client {
  readonly #o: ParsedFetchOptions;
  readonly #send: FetchFunction;
  readonly #perTry: Policy;
  readonly #total: Policy;
  readonly #statuses: ReadonlySet<number>;
  readonly #budget: RetryBudget | undefined;
  /** With a set: the retry around its runs (the set pays into the budget), and one given less time. */
  readonly #retry: Policy | undefined;
  readonly #setRetryWithin: ((ms: number) => Policy) | undefined;
  /** The retry of a call sent to one URL, not over a set, and one given less time. */
  readonly #plainRetry: Policy | undefined;
  readonly #plainRetryWithin: ((ms: number) => Policy) | undefined;
  readonly #breakers: BreakerRegistry | undefined;
  readonly #set: Failover<string> | undefined;
  /** A call's retries through the set: on its first run (which pays into the budget), on later ones. */
  #runs: readonly [FailoverCallRetry | false, FailoverCallRetry | false] = [false, false];
  readonly #owned: { dispose(): void }[] = [];
  readonly #redact: Redactor;
  readonly #clock: Clock;
  /** The clock's monotonic time, for the total deadline: a wall-clock step neither ends nor extends it. */
  readonly #elapsed: () => number;
  readonly #totalMs: number;
  /** Our failover endpoints' real base URLs, by the redacted target their snapshots show. */
  readonly #bases = new Map<string, string>();
  readonly #hedge: HedgePolicy | undefined;
  /** Makes a host's limiter; undefined without `concurrency`. */
  readonly #makeLimiter: ((host: string) => Limiter) | undefined;
  readonly #maxHosts: number;
  /** The per-host limiters, least recently used first. */
  readonly #limiters = new Map<string, Limiter>();
  /**
   * What stops each call not yet answered (its Request's body read included): dispose() aborts
   * them. A set, not a listener per call on one long-lived signal (thousands of calls at once).
   */
  readonly #unanswered = new Set<AbortController>();
  #disposed = false;

  constructor(o: ParsedFetchOptions) {
    this.#o = o;
    const bus: Bus = o.bus ?? globalBus;
    const clock: Clock = o.clock ?? realClock;
    this.#clock = clock;
    this.#elapsed = elapsedTime(clock);
    this.#redact = new Redactor(o.secretParams);
    this.#send = o.fetch ?? ((input, init) => globalThis.fetch(input, init));
    const limits = typeof o.timeout === 'number' ? { perTry: o.timeout } : (o.timeout ?? {});
    const perTry = limits.perTry ?? 10_000;
    this.#perTry = timeout(perTry, { name: `${o.name}.perTry`, bus, clock });
    // A per-try limit past the default total is the total too: one try gets all it was given.
    this.#totalMs = limits.total ?? Math.max(30_000, perTry);
    this.#total = timeout(this.#totalMs, { name: `${o.name}.total`, bus, clock });
    const retryOptions = o.retry === false ? undefined : (o.retry ?? {});
    if (retryOptions) checkRetry(retryOptions);
    this.#statuses = new Set(retryOptions?.statuses ?? defaultStatuses);

    if (o.budget !== false && retryOptions) {
      // With base URLs (or a set of the user's) a retry goes to another host, often after a refused
      // connection that cost the first nothing: 5 a second (failover's own floor) keeps a quiet
      // client's retries; 20% of calls still caps an outage of every host at 1.2 attempts a call
      // once traffic is past 25 a second.
      const floor = o.baseUrls === undefined && o.failover === undefined ? {} : { minPerSecond: 5 };
      this.#budget = o.budget ?? this.#own(retryBudget({ name: `${o.name}.budget`, clock, ...floor }));
    }
    const maxAttempts = retryOptions?.maxAttempts ?? 3;
    // A limiter's refusal is about this host being busy: another host may take it, this one not now.
    const isRetryable = (error: unknown) =>
      ownStillRunning.has(error as object) ||
      (!isNonRetryable(error) && !refusedHere(error) && isTransientError(error));
    // A refused connection, an open breaker or a full limiter never reached the server: safe to try elsewhere.
    const unsent = (error: unknown) => !isNonRetryable(error) && (neverReached(error) || refusedHere(error));
    // A key still running (409 + Retry-After) is running for every host that shares its store:
    // moving on only asks them all again at once; the retry around the failover run waits instead.
    const isRetryableElsewhere = (error: unknown) =>
      !ownStillRunning.has(error as object) && (isRetryable(error) || unsent(error));
    // Every try of a call counts against maxAttempts, over however many runs of the set it takes.
    // An error no try of ours failed with (the set took no call: NoHealthyEndpointError) sent
    // nothing: the set is not run again for it, as an open breaker is not retried.
    const attemptsLeft = (error: unknown) => (sentBy.get(error as object) ?? maxAttempts) < maxAttempts;

    if (o.hedge !== false) {
      const options = o.hedge;
      // A failed try is the retry's (Retry-After, backoff, budget, `retry: false`): only the delay hedges.
      this.#hedge = this.#own(
        within('hedge', () => hedge({ name: `${o.name}.hedge`, ...options, onFailure: false, bus, clock })),
      );
    }
    this.#maxHosts = o.concurrency === false ? 0 : o.concurrency.maxHosts;
    if (o.concurrency !== false) {
      const c = o.concurrency;
      // Listed (as `<name>.concurrency.<host>`) while held: at most maxHosts idle ones, each
      // unlisted by dispose() when evicted or when the client is disposed.
      const make =
        'bulkhead' in c
          ? (host: string, policies?: false): Limiter =>
              bulkhead({ ...c.bulkhead, name: `${o.name}.concurrency.${host}`, policies, bus, clock })
          : (host: string, policies?: false): Limiter =>
              adaptiveConcurrency({ ...c.adaptive, name: `${o.name}.concurrency.${host}`, policies, bus, clock });
      // Bad limiter options fail here, at construction, not on the first request.
      within(`concurrency.${'bulkhead' in c ? 'bulkhead' : 'adaptive'}`, () => make('check', false)).dispose();
      this.#makeLimiter = make;
    }

    if (o.breaker !== false) {
      this.#breakers =
        o.breaker instanceof BreakerRegistry
          ? o.breaker
          : this.#own(within('breaker', () => breakerRegistry({ name: o.name, ...o.breaker, bus, clock })));
    }

    if (o.failover !== undefined || o.baseUrls !== undefined) {
      this.#set =
        o.failover ??
        this.#own(
          failover<string>({
            name: o.name,
            endpoints: (o.baseUrls ?? []).map((url) => ({ name: new URL(url).host, target: this.#base(url) })),
            retry: false, // every call brings its own (#runs), and what says nothing of the endpoint
            bus,
            clock,
          }),
        );
      // Each call through the set, ours or the user's, tries as `retry` says, whatever the set's
      // own retry options: maxAttempts counts every try, an unsafe request moves on only when it
      // never reached the server, and the budget is paid into once a call, as without a set.
      const retryOn = (e: unknown) => isRetryableElsewhere(e) && attemptsLeft(e);
      const budget = this.#budget ?? false;
      const moveOn = { maxAttempts: 1e9, retryOn: unsent, budget: false } as const;
      this.#runs = retryOptions
        ? [
            { maxAttempts, retryOn, budget },
            { maxAttempts, retryOn, budget: budget && withdrawOnly(budget) },
          ]
        : // `retry: false` sends a request once: a try that sent nothing (an open breaker, a full
          // limiter, a refused connection) is no retry, and moves on, each base URL once.
          [moveOn, moveOn];
      // A failover try moves at once to another endpoint, never waiting. Once every endpoint was
      // tried (fewer than maxAttempts: one base URL, say), the set runs again after a backoff, as
      // a call without base URLs is retried; and a keyed call's key still running on the server
      // (409 + Retry-After) is waited for as Retry-After says: without it, the caller got the 409
      // though the order was made. Its waits draw from the budget; failover counted the call.
      if (retryOptions) {
        const budget = this.#budget;
        this.#setRetryWithin = (maxElapsed) =>
          retry({
            name: `${o.name}.retry`,
            maxAttempts,
            maxElapsed,
            ...(retryOptions.backoff ? { backoff: retryOptions.backoff } : {}),
            ...(retryOptions.jitter ? { jitter: retryOptions.jitter } : {}),
            retryOn: {
              // A key still running (isRetryable) is waited for too, within maxAttempts tries.
              error: (error) => isRetryable(error) && attemptsLeft(error),
              result: () => false,
            },
            budget: budget === undefined ? false : withdrawOnly(budget),
            bus,
            clock,
          });
        this.#retry = within('retry', () => this.#setRetryWithin?.(this.#totalMs) as Policy);
      }
    }
    // Without a set, and with one for a URL sent where it says (allowAbsoluteUrls): it pays into the budget.
    if (retryOptions && (this.#set === undefined || o.allowAbsoluteUrls)) {
      this.#plainRetryWithin = (maxElapsed) =>
        retry({
          name: `${o.name}.retry`,
          maxAttempts,
          // A wait (Retry-After included) that would end past the total deadline is not made:
          // the last response is returned at once, as fetch would, instead of a TimeoutError later.
          maxElapsed,
          ...(retryOptions.backoff ? { backoff: retryOptions.backoff } : {}),
          ...(retryOptions.jitter ? { jitter: retryOptions.jitter } : {}),
          // Hedges run retries of their own: every try of the call counts, theirs included (a
          // runner's own last try is left to retry, which gives up with E_RETRY_EXHAUSTED).
          retryOn: {
            error: (error, n) => isRetryable(error) && (n >= maxAttempts || attemptsLeft(error)),
            result: () => false,
          },
          // The call is paid into once, by #body: a hedge of it is the hedge budget's, no call of its own.
          budget: this.#budget === undefined ? false : withdrawOnly(this.#budget),
          bus,
          clock,
        });
      this.#plainRetry = within('retry', () => this.#plainRetryWithin?.(this.#totalMs) as Policy);
    }
  }

  /**
   * `shared` (the retry given the whole total), or, for a retry starting later than its call (a
   * Request's body read first, a hedge's delay), one given only what is left of the call's total:
   * the deadline counts from the call's start, and a wait past it is not made.
   */
  #retryLeft(shared: Policy, make: ((ms: number) => Policy) | undefined, call: Call): Policy {
    const left = call.ends - this.#elapsed();
    return left >= this.#totalMs - 1 || make === undefined ? shared : make(Math.max(1, left));
  }

  /** A base URL as snapshots show it (redacted); the real one is kept here. */
  #base(url: string): string {
    const shown = this.#redact.url(url);
    this.#bases.set(shown, url);
    return shown;
  }

  #own<D extends { dispose(): void }>(thing: D): D {
    this.#owned.push(thing);
    return thing;
  }

  async fetch(input: FetchInput, init: RequestInit | undefined): Promise<Response> {
    if (this.#disposed) throw new DisposedError(this.#o.name);
    // From the call on, the caller's abort or dispose(), whichever comes first, stops it: a
    // Request's body being read, its waits, its request; after it is answered, its body (with
    // the total deadline). Not AbortSignal.any(): on Node 20 each one leaves an entry on the
    // caller's signal for good, and a service passes one long-lived signal (its shutdown
    // signal) to every call.
    const deadline = new AbortController();
    const unfollow = follow(signalOf(input, init), deadline);
    // Until the response reaches the caller, dispose() stops the call as the caller's abort would.
    this.#unanswered.add(deadline);
    // One total from the call's start: a Request's body read counts against it too.
    const start = this.#elapsed();
    let call: Call | undefined;
    let response: Response;
    /** With `throwOnHttpError`: the error thrown, carrying the response (its body cut at the total too). */
    let thrown: unknown;
    try {
      try {
        response = await this.#total.execute(
          async (ctx) => {
            call = await this.#prepare(input, init, ctx.signal, deadline.signal, start + this.#totalMs);
            return this.#run(call, ctx);
          },
          { signal: deadline.signal },
        );
      } catch (error) {
        // A status worth retrying that was still failing when retries ran out: fetch returns it.
        const failed = httpErrorIn(error);
        if (failed === undefined || failed.response !== call?.last) {
          // A failed response not returned (nor carried by the HttpError thrown) is read by nobody: its connection goes.
          if (call?.last !== failed?.response) discard(call?.last);
          throw error;
        }
        response = failed.response;
        if (this.#o.throwOnHttpError) thrown = error;
      }
      // Disposed (or aborted) after the answer came, before it reached the caller: unanswered,
      // the call rejects, as a microtask earlier (its body, read under `deadline`, is cut already).
      if (thrown === undefined) deadline.signal.throwIfAborted();
    } catch (error) {
      // No response reaches the caller: every one still holding a place of the per-host cap goes.
      call?.settle(undefined);
      unfollow();
      throw error;
    } finally {
      this.#unanswered.delete(deadline);
    }
    const answered = call as Call; // made before anything could answer
    // Any other response holding a place (a hedged loser dropped by a policy above) goes.
    answered.settle(response);
    // A hedged attempt's failed response, later than the one returned, is read by nobody.
    if (answered.lastFailed && answered.last !== response) discard(answered.last);
    const { plan } = answered;
    response = this.#coverBody(response, deadline, start, unfollow);
    const carrier = httpErrorIn(thrown);
    if (carrier !== undefined) {
      // The HttpError's response is the caller's to read: its body is cut at the total, as a returned one's.
      Object.defineProperty(carrier, 'response', { value: response, enumerable: false, configurable: true });
      throw thrown;
    }
    if (this.#o.throwOnHttpError && !response.ok) {
      throw new HttpError(plan.method, this.#redact.url(answered.lastUrl ?? plan.url), response);
    }
    return response;
  }

  /**
   * The call, once a `Request`'s body has been read (until `signal`: the total deadline, the
   * caller's abort or dispose()), its route checked and its idempotency key set.
   */
  async #prepare(
    input: FetchInput,
    init: RequestInit | undefined,
    signal: AbortSignal,
    reading: AbortSignal,
    ends: number,
  ) {
    const plan = await planOf(input, init, signal);
    // Disposed meanwhile (a Request's body read, or only this await): nothing is sent, and the
    // call rejects with E_DISPOSED, or with the caller's reason if its abort came first.
    if (this.#disposed) throw reading.reason;
    const at = this.#set === undefined ? undefined : this.#route(plan.url);
    const header = this.#o.idempotencyHeader;
    if (
      this.#o.idempotencyKey === 'auto' &&
      (plan.method === 'POST' || plan.method === 'PATCH') &&
      !plan.headers.get(header) // a blank key is no key (Headers trims it to '')
    ) {
      plan.headers.set(header, crypto.randomUUID()); // one key per logical call, sent on every retry
    }
    const safe = isSafeToRepeat(plan, header);
    return new Call(this, plan, safe, !!plan.headers.get(header), reading, at, this.#elapsed, ends);
  }

  /**
   * The total deadline goes on while the caller reads the body, as AbortSignal.timeout() would;
   * its timer is cleared once the body is read to the end, fails or is cancelled.
   */
  #coverBody(response: Response, deadline: AbortController, start: number, unfollow: () => void): Response {
    const left = this.#totalMs - (this.#elapsed() - start);
    // The caller's signal is followed until the body ends or the deadline passes, never longer.
    const expire = () => {
      unfollow();
      deadline.abort(new TimeoutError(`${this.#o.name}.total`, this.#totalMs));
    };
    if (left <= 0) {
      expire();
      return response;
    }
    if (response.body === null) {
      unfollow();
      return response; // nothing left to read
    }
    const timer = this.#clock.setTimeout(expire, left); // unref'd: never holds the process open
    try {
      return whenBodyEnds(response, () => {
        this.#clock.clearTimeout(timer);
        unfollow();
      });
    } catch {
      // A status or reason phrase fetch takes from the wire but Response() refuses (600, a control
      // character): fetch's own response, its body still cut at the deadline, which unfollows.
      return response;
    }
  }

  #run(call: Call, ctx: CallContext): Promise<Response> {
    // Each hedged attempt runs the whole body: failover and retries included.
    if (this.#hedge !== undefined) {
      const hedge = this.#hedge;
      const attempt = async (c: CallContext) => {
        if (c.attempt > 1) await this.#slow(hedge, call, c);
        call.live++;
        return this.#body(call, c, c.attempt > 1).then(
          (response) => {
            call.live--;
            // Answered after another attempt won (aborted meanwhile): read by nobody.
            if (c.signal.aborted) discard(response);
            return response;
          },
          (error: unknown) => {
            call.live--;
            call.failed(error);
            throw error;
          },
        );
      };
      return hedge.execute(attempt, { signal: ctx.signal, safe: call.safe });
    }
    return this.#body(call, ctx, false);
  }

  /**
   * Resolves when a hedge may go: beside a slow request only. While the call waits to send again
   * (a Retry-After, a backoff), it waits for the next try, then for the hedge's delay past that
   * try's start: a failure is the retry's, never sent again at once. Once the call's other
   * attempts have failed, it fails as they did.
   */
  async #slow(hedge: HedgePolicy, call: Call, ctx: CallContext): Promise<void> {
    for (;;) {
      const wait = call.slowFor(hedge.snapshot().delay);
      if (wait === 0) return;
      if (wait < 0 && call.live === 0) throw call.failure;
      await call.until(wait, ctx.signal, this.#clock);
    }
  }

  /**
   * One attempt of the call: its retries, over the set if there is one. A hedge (`hedged`) is paid
   * for by the hedge budget: it counts no call in the retry budget, which its retries still draw from.
   */
  #body(call: Call, ctx: CallContext, hedged: boolean): Promise<Response> {
    const set = this.#set;
    if (set !== undefined && call.at !== undefined) {
      if (this.#retry !== undefined && call.safe) {
        const retry = this.#retryLeft(this.#retry, this.#setRetryWithin, call);
        return retry.execute((c) => this.#over(set, call, c, hedged), ctx);
      }
      return this.#over(set, call, ctx, hedged);
    }
    const url = call.plan.url;
    const shared = this.#plainRetry;
    if (shared === undefined || !call.safe) return call.attempt(url, ctx);
    if (!hedged) this.#budget?.deposit();
    return this.#retryLeft(shared, this.#plainRetryWithin, call).execute((c) => call.attempt(url, c), ctx);
  }

  /**
   * Where a call's `url` goes on each base URL, or a TypeError: a path that names a host of its
   * own, or an absolute URL under none of the base URLs (a URL from a user would take the
   * caller's headers and body there: axios' CVE-2025-27152), unless `allowAbsoluteUrls`. One
   * under a base URL (a next link one of them returned) is the path under it, on every base URL;
   * undefined for one sent where it says, outside the set.
   */
  #route(url: string): ((base: string) => string) | undefined {
    const absolute = absoluteUrl(url);
    if (absolute === undefined) {
      const elsewhere = hostOfPath(url);
      if (elsewhere !== undefined) {
        throw refusal(
          'E_PATH_NAMES_HOST',
          `${this.#o.name}: a path that names a host (// or /\\ first) leads to ${elsewhere}, away from the base URLs; refused`,
        );
      }
      return (base) => this.#parse(url, base).href;
    }
    for (const base of this.#baseUrls()) {
      const rest = restUnder(absolute, base);
      if (rest !== undefined) return (other) => rebase(rest, other);
    }
    // Sent as without base URLs: a host outside the set says nothing of the set's endpoints.
    if (this.#o.allowAbsoluteUrls) return undefined;
    throw refusal(
      'E_ABSOLUTE_URL',
      // Shown as URL reads it (what fetch would send): no newline or escape of the input's forges a log line.
      `${this.#o.name}: an absolute URL (${this.#redact.url(absolute.href)}) is not under the base URLs; refused: give a path, or allowAbsoluteUrls: true to send it where it says`,
    );
  }

  /**
   * The base URLs: ours, or the targets of the user's set as strings (a URL object too: a path is
   * joined under it; one that is no URL is under nothing).
   */
  #baseUrls(): readonly string[] {
    return this.#o.baseUrls ?? (this.#set?.endpoints ?? []).map((e) => `${e.target}`);
  }

  /** One run of a call over the failover set's endpoints; the call's first run pays into the budget. */
  #over(set: Failover<string>, call: Call, ctx: CallContext, hedged: boolean): Promise<Response> {
    // A hedge goes to an endpoint no other attempt of this call is running on.
    const avoid = call.endpoints.size > 0 ? [...call.endpoints.keys()] : undefined;
    const retry = this.#runs[hedged || ctx.attempt > 1 ? 1 : 0];
    const options = { signal: ctx.signal, avoid, retry, ignore: saysNothingOfHost };
    return set.execute(
      (endpoint, c) =>
        call.on(endpoint.name, () => {
          const base = this.#bases.get(endpoint.target) ?? endpoint.target;
          return call.attempt((call.at as (base: string) => string)(base), c);
        }),
      options,
    );
  }

  /** `url`, joined under `base`; Node's error for a bad one carries it whole as `input`, password included: ours does not. */
  #parse(url: string, base?: string): URL {
    try {
      return base === undefined ? new URL(url) : joinPath(url, base);
    } catch {
      throw Object.assign(new TypeError(`Invalid URL: ${this.#redact.url(url)}`), { code: 'ERR_INVALID_URL' });
    }
  }

  /** One try: the host's limiter around its breaker around a per-try timeout around fetch. */
  send(call: Call, url: string, ctx: CallContext): Promise<Response> {
    const once = (c: CallContext) => this.#perTry.execute((t) => this.#exchange(call, url, t), c);
    const host = this.#parse(url).host;
    const breakers = this.#breakers;
    let guarded = once;
    if (breakers !== undefined) {
      // A request fetch refused (a redirect it would not follow, one it would not send), and what a
      // redirect's target on another origin answered, are no failure of the host: the breaker sees it pass.
      guarded = (c: CallContext) => {
        let aside: { error: unknown } | { response: Response } | undefined;
        const judged = (j: CallContext) =>
          once(j).then(
            (response) => {
              if (!redirectedAway(response, url)) return response;
              aside = { response };
              return undefined as unknown as Response;
            },
            (error: unknown) => {
              const e = error as object;
              if (!refusedByFetch.has(e) && !ownStillRunning.has(e) && !elsewhere.has(e)) throw error;
              aside = { error };
              return undefined as unknown as Response;
            },
          );
        return breakers.execute(host, judged, c).then((response) => {
          if (aside === undefined) return response;
          if ('error' in aside) throw aside.error;
          return aside.response;
        });
      };
    }
    const limiter = this.#limiterFor(host);
    return limiter === undefined ? guarded(ctx) : holding(limiter, guarded, ctx, call);
  }

  /** The host's limiter, made on first use; past `maxHosts`, the least recently used idle one goes. */
  #limiterFor(host: string): Limiter | undefined {
    if (this.#makeLimiter === undefined) return undefined;
    let limiter = this.#limiters.get(host);
    if (limiter !== undefined) {
      this.#limiters.delete(host); // to the back: most recently used
      this.#limiters.set(host, limiter);
      return limiter;
    }
    if (this.#limiters.size >= this.#maxHosts) {
      for (const [name, old] of this.#limiters) {
        if (idle(old)) {
          this.#limiters.delete(name);
          old.dispose();
          break;
        }
      }
    }
    limiter = this.#makeLimiter(host);
    this.#limiters.set(host, limiter);
    return limiter;
  }

  async #exchange(call: Call, url: string, ctx: CallContext): Promise<Response> {
    let response: Response;
    // An attempt of this call went to a server before this one (it may still be running there).
    const earlier = call.sent++ > 0;
    call.exchanges++;
    try {
      response = await this.#send(
        url,
        attemptInit(call.plan, AbortSignal.any([ctx.signal, call.reading]), call.bodyRead),
      );
    } catch (error) {
      throw this.#explain(error, call, url);
    } finally {
      call.exchanges--;
    }
    if (response.status === 409 && call.keyed && call.exchanges > 0) {
      // Our own duplicate: a hedge of a keyed request found the key still running on another
      // attempt of this call (a server that honours the key answers 409 then, as the IETF draft
      // says). Not an answer: the other attempt's is. Never repeated.
      discard(response);
      const duplicate = nonRetryable(new HttpError(call.plan.method, this.#redact.url(url), response));
      ownDuplicates.add(duplicate);
      throw duplicate;
    }
    if (response.status === 409 && call.keyed && earlier && response.headers.has('retry-after')) {
      // The server still runs this call's key for an attempt we gave up on (a per-try timeout):
      // its response is what the caller wants, and the server says when to come back for it.
      // Retried as it says; when retries run out, this 409 is what the caller gets.
      call.remember(response, url, true);
      const running = new HttpError(call.plan.method, this.#redact.url(url), response);
      ownStillRunning.add(running);
      throw running;
    }
    const failed = this.#statuses.has(response.status);
    call.remember(response, url, failed);
    if (!failed) return response;
    const refused = new HttpError(call.plan.method, this.#redact.url(url), response);
    if (redirectedAway(response, url)) elsewhere.add(refused);
    throw refused;
  }

  /**
   * fetch's TypeError, made to say what happened: `fetch failed: connect ECONNREFUSED ...` with
   * the root cause's `code`, and no credentials or secret parameters. A redirect that fetch
   * refused (a loop, `redirect: 'error'`, a Location with credentials or not http) is not
   * retried, nor held against the host's breaker: it would only be refused again. So are the two
   * answers undici refuses without a reason: a redirect that a stream body cannot follow (it
   * would be sent again) and a 407.
   */
  #explain(error: unknown, call: Call, url: string): unknown {
    if (!(error instanceof TypeError)) return error;
    if (error.message === 'fetch failed' && error.cause !== undefined) {
      const root = rootCause(error.cause);
      // Told apart by undici's function names; a stack without them (Error.stackTraceLimit = 0, a
      // minified undici) says neither, and a stream body may have met either.
      const why = root.message
        ? this.#redact.text(root.message)
        : `${call.plan.method} ${this.#redact.url(url)}${
            call.plan.replayable || /OrCache/.test(root.stack)
              ? ': answered 407 Proxy Authentication Required, which fetch does not return'
              : `${/Redirect/.test(root.stack) ? '' : ' answered 407, or'} was redirected, which would send its stream body again: send bytes, or redirect: 'manual'`
          }`;
      // Headers past undici's limit: the host answered, and answers this request so again. As a
      // 500: not retried (it would be sent again), held against the host's breaker.
      const overflow = root.code === 'UND_ERR_HEADERS_OVERFLOW';
      const explained = new TypeError(
        `fetch failed: ${why}${overflow ? ": the response's headers are larger than fetch takes (--max-http-header-size, 16 KiB by default)" : ''}`,
        { cause: error },
      );
      if (root.code !== undefined) Object.assign(explained, { code: root.code });
      // A refused connection to somewhere else (a redirect's Location, a proxy) is no proof the
      // request was not sent first (a POST answered 303): not sent again. Nor is it the host's failure.
      if (connectsElsewhere(error.cause, new URL(url))) {
        elsewhere.add(explained);
        if (!call.safe) nonRetryable(explained);
      }
      // A URL that is not http(s) (file:, about:, blob:, ftp:) is fetch's to refuse, never a host's to fail.
      if (overflow) overflowed.add(nonRetryable(explained));
      else if (!root.message || refusedRedirect.test(root.message) || !speaksHttp(url)) {
        refusedByFetch.add(nonRetryable(explained));
      }
      return explained;
    }
    const message = this.#redact.text(error.message);
    const refused = message === error.message ? error : new TypeError(message);
    // No network failure: fetch would not send this request. The caller's to fix, not the host's.
    if (!isNetworkError(refused)) refusedByFetch.add(nonRetryable(refused));
    return refused;
  }

  snapshot(): JsonValue {
    return {
      breakers: this.#breakers?.snapshot() ?? null,
      failover: this.#set?.snapshot() ?? null,
      budget: this.#budget?.snapshot() ?? null,
      hedge: this.#hedge?.snapshot() ?? null,
      concurrency:
        this.#makeLimiter === undefined
          ? null
          : Object.fromEntries([...this.#limiters].map(([host, limiter]) => [host, limiter.snapshot()])),
    } as JsonValue;
  }

  dispose(): void {
    this.#disposed = true;
    // The calls first: each ends with our DisposedError, not with whichever part it waited in.
    const unanswered = [...this.#unanswered];
    this.#unanswered.clear();
    for (const call of unanswered) call.abort(new DisposedError(this.#o.name));
    for (const thing of this.#owned.splice(0)) thing.dispose();
    for (const limiter of this.#limiters.values()) limiter.dispose();
    this.#limiters.clear();
  }
}

/** One logical request across its attempts. */
class Call {
  /** The latest response, kept whole so it can be returned if retries run out. */
  last: Response | undefined;
  /** Where the latest response came from: with base URLs, not the path the caller gave. */
  lastUrl: string | undefined;
  /** Whether `last` was refused (a retried status): only such a response is discarded by a later try. */
  lastFailed = false;
  /** Attempts of this call waiting for their response headers now. */
  exchanges = 0;
  /** Attempts of this call sent so far. */
  sent = 0;
  /** fetch read from a stream body: it cannot be sent again, even where the connection failed. */
  bodyGone = false;
  readonly bodyRead = () => {
    this.bodyGone = true;
  };
  /** Endpoints this call's attempts are running on now, with how many: hedges keep away from them. */
  readonly endpoints = new Map<string, number>();
  /** Tries of this call running now (sent, or waiting on their host's limiter), and since when. */
  #trying = 0;
  #tryingSince = 0;
  /** Hedges waiting for the call's next try to start, or its other attempts to fail. */
  readonly #waiting = new Set<() => void>();
  /** Responses holding a place of their host's limiter until their body ends. */
  readonly held = new Set<Response>();
  /** The call has returned or thrown: a response coming later is read by nobody. */
  settled = false;
  /** Attempts of this call running, but hedges still waiting to go; and the error the last one failed with. */
  live = 0;
  failure: unknown;

  constructor(
    readonly client: Client,
    readonly plan: Plan,
    readonly safe: boolean,
    /** The request carries an idempotency key. */
    readonly keyed: boolean,
    /** Aborts when the caller aborts or the total deadline passes, the body read included. */
    readonly reading: AbortSignal,
    /** With base URLs: where the call goes on each; undefined for a URL sent where it says. */
    readonly at: ((base: string) => string) | undefined,
    /** The client's monotonic time. */
    readonly elapsed: () => number,
    /** When (on `elapsed`) the call's total deadline passes: it counts from the call's start. */
    readonly ends: number,
  ) {}

  async attempt(url: string, ctx: CallContext): Promise<Response> {
    // The previous attempt's refused response will not be read. A hedged attempt's answer may
    // be the one the caller gets: it is never discarded here.
    if (this.lastFailed) discard(this.last);
    this.last = undefined;
    this.lastFailed = false;
    if (this.#trying++ === 0) {
      this.#tryingSince = this.elapsed();
      this.#wake();
    }
    try {
      return await this.client.send(this, url, ctx);
    } catch (error) {
      // Never repeat what is not safe to repeat, on this endpoint or another; a request that never
      // reached a server may go to another, unless its stream body already went to fetch.
      const untouched = !this.bodyGone && (neverReached(error) || refusedHere(error));
      if (typeof error === 'object' && error !== null) {
        sentBy.set(error, this.sent);
        if (!this.safe && !untouched) nonRetryable(error);
      }
      throw error;
    } finally {
      this.#trying--;
    }
  }

  /**
   * The call returns `kept` (or throws, with none): every other response still holding a place
   * (a hedge's loser a policy above dropped without a look) is cancelled, its place freed.
   */
  settle(kept: Response | undefined): void {
    this.settled = true;
    for (const response of this.held) if (response !== kept) discard(response);
    this.held.clear();
  }

  /** An attempt failed: hedges waiting see whether any other is left. */
  failed(error: unknown): void {
    this.failure = error;
    this.#wake();
  }

  #wake(): void {
    for (const wake of this.#waiting) wake();
  }

  /** How long a hedge still waits: 0 once a try has been running `delay` ms, -1 (for the next try) while none runs. */
  slowFor(delay: number): number {
    return this.#trying === 0 ? -1 : Math.max(0, this.#tryingSince + delay - this.elapsed());
  }

  /** Resolves after `ms`, when the call's next try starts or an attempt fails; rejects when `signal` aborts. */
  until(ms: number, signal: AbortSignal, clock: Clock): Promise<void> {
    return new Promise((resolve, reject) => {
      signal.throwIfAborted();
      const end = (error?: unknown) => {
        this.#waiting.delete(wake);
        signal.removeEventListener('abort', stop);
        if (timer !== undefined) clock.clearTimeout(timer);
        if (error === undefined) resolve();
        else reject(error);
      };
      const wake = () => end();
      const stop = () => end(signal.reason ?? new DOMException('aborted', 'AbortError'));
      const timer = ms > 0 ? clock.setTimeout(wake, ms) : undefined;
      this.#waiting.add(wake);
      signal.addEventListener('abort', stop, { once: true });
    });
  }

  /** Runs one try on an endpoint, counting it as in flight there meanwhile. */
  async on<R>(endpoint: string, run: () => Promise<R>): Promise<R> {
    this.endpoints.set(endpoint, (this.endpoints.get(endpoint) ?? 0) + 1);
    try {
      return await run();
    } finally {
      const left = (this.endpoints.get(endpoint) ?? 1) - 1;
      if (left === 0) this.endpoints.delete(endpoint);
      else this.endpoints.set(endpoint, left);
    }
  }

  remember(response: Response, url: string, failed: boolean): void {
    // Another attempt's refused response (hedged attempts answer side by side) is read by nobody.
    if (this.lastFailed && this.last !== response) discard(this.last);
    this.last = response;
    this.lastUrl = url;
    this.lastFailed = failed;
  }
}

/**
 * The calls following each caller signal. One listener per signal, whatever the number of calls
 * on it: a service passes one long-lived signal (its shutdown signal) to thousands of calls at
 * once, and a listener per call passed Node's leak warning limit (1500 as fetch sets it) at 1501.
 */
const followers = new WeakMap<AbortSignal, { calls: Set<AbortController>; relay: () => void }>();

/** Aborts `controller` when `signal` does, until the returned function is called. */
function follow(signal: AbortSignal | undefined, controller: AbortController): () => void {
  if (signal === undefined) return noop;
  if (signal.aborted) {
    controller.abort(signal.reason);
    return noop;
  }
  let entry = followers.get(signal);
  if (entry === undefined) {
    const calls = new Set<AbortController>();
    const relay = () => {
      followers.delete(signal);
      for (const call of calls) call.abort(signal.reason);
    };
    entry = { calls, relay };
    followers.set(signal, entry);
    signal.addEventListener('abort', relay, { once: true });
  }
  const { calls, relay } = entry;
  calls.add(controller);
  return () => {
    // Once the last call on it ends, nothing of ours stays on the caller's signal.
    if (calls.delete(controller) && calls.size === 0) {
      followers.delete(signal);
      signal.removeEventListener('abort', relay);
    }
  };
}

function noop(): void {}

/** Whether a limiter has nothing running or waiting: it may be dropped. */
function idle(limiter: Limiter): boolean {
  const s = limiter.snapshot() as { running?: number; queued?: number; inFlight?: number };
  return (s.running ?? 0) === 0 && (s.queued ?? 0) === 0 && (s.inFlight ?? 0) === 0;
}

/**
 * A try through its host's limiter, whose place is held until the response's body ends (read to
 * the end, failed or cancelled) or the call's deadline passes (`reading`: its total, the caller's
 * abort): a body still streaming is a request in flight. A failed try frees it at once, its
 * response discarded (or returned once retries ran out).
 */
function holding(
  limiter: Limiter,
  run: (ctx: CallContext) => Promise<Response>,
  ctx: CallContext,
  call: Call,
): Promise<Response> {
  const { reading } = call;
  return new Promise((resolve, reject) => {
    limiter
      .execute(async (c) => {
        const response = await run(c);
        // No body to wait for (a 204, a HEAD, `Content-Length: 0`): nothing stays in flight.
        if (response.body === null || response.headers.get('content-length') === '0' || reading.aborted) {
          return resolve(response);
        }
        // Answered once the call had settled (a hedge's loser): read by nobody.
        if (call.settled) {
          discard(response);
          return resolve(response);
        }
        await new Promise<void>((free) => {
          let held: Response | undefined;
          const release = () => {
            reading.removeEventListener('abort', release);
            if (held !== undefined) call.held.delete(held);
            free();
          };
          reading.addEventListener('abort', release, { once: true });
          try {
            held = whenBodyEnds(response, release);
            // Until the call settles: one it does not return is cancelled then (see Call.settle).
            call.held.add(held);
          } catch {
            held = response; // one Response() refuses (see #coverBody): held until the deadline
          }
          resolve(held);
        });
      }, ctx)
      .catch(reject);
  });
}

/**
 * `response` with a body that calls `done` once it has been read to the end, has failed or has
 * been cancelled: a byte stream, as fetch's is. Status, headers, `url`, `redirected` and `type`
 * are those of `response` (see {@link keep}).
 */
function whenBodyEnds(response: Response, done: () => void): Response {
  const source = response.body as ReadableStream<Uint8Array>;
  // Taken on first read: until then the response is untouched, should Response() refuse it below.
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  const body = new ReadableStream(
    {
      type: 'bytes',
      async pull(controller) {
        try {
          reader ??= source.getReader();
          // An empty chunk is skipped, read on here: a byte stream pulls again only if asked during the pull.
          for (;;) {
            const chunk = await reader.read();
            if (chunk.done) {
              done();
              controller.close();
              controller.byobRequest?.respond(0); // a BYOB read waiting is told the end
              return;
            }
            if (!(chunk.value instanceof Uint8Array)) throw new TypeError('Received non-Uint8Array chunk');
            if (chunk.value.byteLength > 0) {
              // A copy: enqueue() on a byte stream transfers (detaches) the buffer, which may be
              // the producer's still (a user's fetch serving one shared array, a tee()'s branches).
              controller.enqueue(new Uint8Array(chunk.value));
              return;
            }
          }
        } catch (error) {
          // The source failed, or gave what a byte stream takes not (no bytes): read no further.
          done();
          controller.error(error);
          reader?.cancel(error).catch(() => {});
        }
      },
      cancel(reason) {
        done();
        return (reader ?? source).cancel(reason);
      },
    },
    { highWaterMark: 0 }, // read from the network only as the caller reads
  );
  const { status, statusText, headers } = response;
  return keep(new Response(body, { status, statusText, headers }), response); // headers: blob()'s type, formData()
}

/**
 * `response` reading as `from` does, its clones too: `url`, `redirected` and `type`, which
 * Response() cannot set, and `from`'s headers (fetch's are immutable).
 */
function keep(response: Response, from: Response): Response {
  for (const key of ['url', 'redirected', 'type', 'headers'] as const) {
    Object.defineProperty(response, key, { value: from[key], enumerable: true, configurable: true });
  }
  Object.defineProperty(response, 'clone', {
    value: function clone(this: Response) {
      return keep(Response.prototype.clone.call(this), from);
    },
    configurable: true,
    writable: true,
  });
  return response;
}

/** Whether `response` came from a redirect's target on another origin than `url`'s. */
function redirectedAway(response: Response, url: string): boolean {
  return response.redirected && URL.canParse(response.url) && new URL(response.url).origin !== new URL(url).origin;
}

/** The HttpError itself, or the one a retry or failover error wraps as its cause. */
function httpErrorIn(error: unknown): HttpError | undefined {
  for (let e = error, depth = 0; typeof e === 'object' && e !== null && depth < 4; e = (e as Error).cause, depth++) {
    if (e instanceof HttpError) return e;
  }
  return undefined;
}

/**
 * The deepest cause of a network failure, with its message (empty for an Error without one),
 * stack and code (an AggregateError's first error).
 */
function rootCause(error: unknown): { message: string; code: string | undefined; stack: string } {
  let e = error;
  for (let depth = 0; depth < 5; depth++) {
    const next = (e as { cause?: unknown } | null)?.cause;
    const inner = (e as { errors?: unknown[] } | null)?.errors?.[0];
    if (next === undefined && inner === undefined) break;
    // An AggregateError (every address refused) has no message of its own: its first error says it.
    e = next ?? inner;
  }
  const { message, code, stack } = (e ?? {}) as { message?: unknown; code?: unknown; stack?: unknown };
  const outer = (error ?? {}) as { code?: unknown };
  return {
    message: typeof message === 'string' && (message !== '' || e instanceof Error) ? message : String(e),
    stack: String(stack),
    code: typeof code === 'string' ? code : typeof outer.code === 'string' ? outer.code : undefined,
  };
}

/**
 * `retry.backoff` and `retry.jitter` are checked as @holdfast/retry checks them, with or without
 * base URLs (with them, they are the wait before the set runs again).
 */
function checkRetry(r: Exclude<ParsedFetchOptions['retry'], false | undefined>): void {
  within('retry', () =>
    retry({
      ...(r.backoff ? { backoff: r.backoff } : {}),
      ...(r.jitter ? { jitter: r.jitter } : {}),
      budget: false,
    }),
  );
}

/**
 * A request refused here, before anything was sent: a `TypeError`, as fetch's own refusals are,
 * with a `code` to tell it by.
 */
function refusal(code: 'E_ABSOLUTE_URL' | 'E_PATH_NAMES_HOST', message: string): TypeError & { code: string } {
  return Object.assign(new TypeError(message), { code });
}

/** Whether a connection failure (`cause`, an AggregateError's) names a port, a host name, or an address when `url` names an IP, not `url`'s. */
function connectsElsewhere(cause: unknown, url: URL, depth = 0): boolean {
  if (typeof cause !== 'object' || cause === null || depth > 5) return false;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const { port, address, hostname, errors, cause: inner } = cause as Record<string, unknown>;
  return (
    (typeof port === 'number' && port !== Number(url.port || (url.protocol === 'https:' ? 443 : 80))) ||
    (typeof address === 'string' && /^[\d.]+$|:/.test(host) && address !== host) ||
    // A name that does not resolve (getaddrinfo ENOTFOUND) names itself.
    (typeof hostname === 'string' && hostname !== '' && hostname.toLowerCase() !== host.toLowerCase()) ||
    (Array.isArray(errors) && errors.some((e) => connectsElsewhere(e, url, depth + 1))) ||
    connectsElsewhere(inner, url, depth + 1)
  );
}

/** Whether `url` (one fetch parsed: it failed sending it) is http(s), the only schemes that reach a host. */
function speaksHttp(url: string): boolean {
  return URL.canParse(url) && /^https?:$/.test(new URL(url).protocol);
}

/** `budget` for a policy around another that already counts the call: takes retries, counts no call. */
function withdrawOnly(budget: RetryBudget): RetryBudget {
  return {
    name: budget.name,
    deposit() {},
    tryWithdraw: () => budget.tryWithdraw(),
    get balance() {
      return budget.balance;
    },
    snapshot: () => budget.snapshot(),
    dispose() {}, // the budget is not ours to dispose
  };
}

/** Runs a factory we call for the user, naming a bad option by the path the user gave it under. */
function within<T>(path: string, make: () => T): T {
  try {
    return make();
  } catch (error) {
    if (!(error instanceof HoldfastConfigError)) throw error;
    throw new HoldfastConfigError(
      'resilientFetch',
      error.issues.map((issue) => ({ ...issue, path: issue.path ? `${path}.${issue.path}` : path })),
    );
  }
}
