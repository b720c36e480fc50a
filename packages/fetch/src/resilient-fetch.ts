import { BreakerRegistry, breakerRegistry } from '@holdfast/breaker';
import {
  type Bus,
  type CallContext,
  type Clock,
  bus as globalBus,
  HoldfastConfigError,
  type JsonValue,
  type Policy,
  parseOptions,
  realClock,
  TimeoutError,
  timeout,
} from '@holdfast/core';
import { type Failover, failover, neverReached } from '@holdfast/failover';
import { isNonRetryable, isTransientError, nonRetryable, type RetryBudget, retry, retryBudget } from '@holdfast/retry';
import { HttpError } from './errors.js';
import { type ParsedFetchOptions, type ResilientFetchOptions, resilientFetchOptionsSchema } from './options.js';
import { Redactor } from './redact.js';
import { attemptInit, discard, type FetchInput, isSafeToRepeat, type Plan, planOf } from './request.js';

/** `fetch`'s own signature. */
export type FetchFunction = (input: FetchInput, init?: RequestInit) => Promise<Response>;

/** What {@link resilientFetch} returns: a fetch, with the state behind it. */
export interface ResilientFetch extends FetchFunction {
  /** The per-host breakers, the failover set and the budget, as plain JSON. */
  snapshot(): JsonValue;
  /** Stops the timers of what this fetch made itself (breakers, failover set, budget). */
  dispose(): void;
}

const defaultStatuses = [408, 429, 502, 503, 504];

/**
 * undici's reasons for refusing a redirect: a loop or `redirect: 'error'` ("redirect count
 * exceeded", "unexpected redirect"), a Location with credentials ("cross origin not allowed"),
 * or one that is not http(s) ("URL scheme must be a HTTP(S) scheme").
 */
const refusedRedirect = /redirect|cross origin not allowed|URL scheme must be/i;
/** The errors {@link Client} made of refused redirects: never retried, never a breaker failure. */
const refusedRedirects = new WeakSet<object>();

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
  readonly #retry: Policy | undefined;
  readonly #breakers: BreakerRegistry | undefined;
  readonly #set: Failover<string> | undefined;
  readonly #owned: { dispose(): void }[] = [];
  readonly #redact: Redactor;
  readonly #clock: Clock;
  readonly #totalMs: number;
  /** Our failover endpoints' real base URLs, by the redacted target their snapshots show. */
  readonly #bases = new Map<string, string>();

  constructor(o: ParsedFetchOptions) {
    this.#o = o;
    const bus: Bus = o.bus ?? globalBus;
    const clock: Clock = o.clock ?? realClock;
    this.#clock = clock;
    this.#redact = new Redactor(o.secretParams);
    this.#send = o.fetch ?? ((input, init) => globalThis.fetch(input, init));
    const limits = typeof o.timeout === 'number' ? { perTry: o.timeout } : (o.timeout ?? {});
    this.#perTry = timeout(limits.perTry ?? 10_000, { name: `${o.name}.perTry`, bus, clock });
    this.#totalMs = limits.total ?? 30_000;
    this.#total = timeout(this.#totalMs, { name: `${o.name}.total`, bus, clock });
    const retryOptions = o.retry === false ? undefined : (o.retry ?? {});
    if (retryOptions) checkRetry(o, retryOptions);
    this.#statuses = new Set(retryOptions?.statuses ?? defaultStatuses);

    if (o.budget !== false && retryOptions) {
      this.#budget = o.budget ?? this.#own(retryBudget({ name: `${o.name}.budget`, clock }));
    }
    const maxAttempts = retryOptions?.maxAttempts ?? 3;
    const isRetryable = (error: unknown) => !isNonRetryable(error) && isTransientError(error);
    // A refused connection or an open breaker never reached the server: safe to try elsewhere.
    const isRetryableElsewhere = (error: unknown) =>
      isRetryable(error) || (!isNonRetryable(error) && neverReached(error));

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
            retry: retryOptions ? { maxAttempts, retryOn: isRetryableElsewhere, budget: this.#budget ?? false } : false,
            bus,
            clock,
          }),
        );
    } else if (retryOptions) {
      this.#retry = within('retry', () =>
        retry({
          name: `${o.name}.retry`,
          maxAttempts,
          // A wait (Retry-After included) that would end past the total deadline is not made:
          // the last response is returned at once, as fetch would, instead of a TimeoutError later.
          maxElapsed: this.#totalMs,
          ...(retryOptions.backoff ? { backoff: retryOptions.backoff } : {}),
          ...(retryOptions.jitter ? { jitter: retryOptions.jitter } : {}),
          retryOn: { error: isRetryable, result: () => false },
          budget: this.#budget ?? false,
          bus,
          clock,
        }),
      );
    }
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
    const plan = await planOf(input, init);
    const header = this.#o.idempotencyHeader;
    if (
      this.#o.idempotencyKey === 'auto' &&
      (plan.method === 'POST' || plan.method === 'PATCH') &&
      !plan.headers.has(header)
    ) {
      plan.headers.set(header, crypto.randomUUID()); // one key per logical call, sent on every retry
    }
    // After the headers, the caller's abort and the total deadline still stop the body read.
    const deadline = new AbortController();
    const reading = plan.signal ? AbortSignal.any([plan.signal, deadline.signal]) : deadline.signal;
    const call = new Call(this, plan, isSafeToRepeat(plan, header), reading);
    const start = this.#clock.now();
    let response: Response;
    try {
      response = await this.#total.execute((ctx) => this.#run(call, ctx), { signal: plan.signal });
    } catch (error) {
      // A status worth retrying that was still failing when retries ran out: fetch returns it.
      const failed = httpErrorIn(error);
      if (failed === undefined || failed.response !== call.last || this.#o.throwOnHttpError) throw error;
      response = failed.response;
    }
    response = this.#coverBody(response, deadline, start);
    if (this.#o.throwOnHttpError && !response.ok) {
      throw new HttpError(plan.method, this.#redact.url(call.lastUrl ?? plan.url), response);
    }
    return response;
  }

  /**
   * The total deadline goes on while the caller reads the body, as AbortSignal.timeout() would;
   * its timer is cleared once the body is read to the end, fails or is cancelled.
   */
  #coverBody(response: Response, deadline: AbortController, start: number): Response {
    const left = this.#totalMs - (this.#clock.now() - start);
    const expire = () => deadline.abort(new TimeoutError(`${this.#o.name}.total`, this.#totalMs));
    if (left <= 0) {
      expire();
      return response;
    }
    if (response.body === null) return response; // nothing left to read
    const timer = this.#clock.setTimeout(expire, left); // unref'd: never holds the process open
    return whenBodyEnds(response, () => this.#clock.clearTimeout(timer));
  }

  #run(call: Call, ctx: CallContext): Promise<Response> {
    if (this.#set !== undefined) {
      return this.#set.execute((endpoint, c) => {
        const base = this.#bases.get(endpoint.target) ?? endpoint.target;
        return call.attempt(new URL(call.plan.url, base).href, c);
      }, ctx);
    }
    const url = call.plan.url;
    if (this.#retry !== undefined && call.safe) return this.#retry.execute((c) => call.attempt(url, c), ctx);
    return call.attempt(url, ctx);
  }

  /** One try: the host's breaker around a per-try timeout around fetch. */
  send(call: Call, url: string, ctx: CallContext): Promise<Response> {
    const once = (c: CallContext) => this.#perTry.execute((t) => this.#exchange(call, url, t), c);
    if (this.#breakers === undefined) return once(ctx);
    // A redirect fetch refused is an answer from the host, not a failure of it: the breaker sees it pass.
    let refused: { error: unknown } | undefined;
    const judged = (c: CallContext) =>
      once(c).catch((error: unknown) => {
        if (!refusedRedirects.has(error as object)) throw error;
        refused = { error };
        return undefined as unknown as Response;
      });
    return this.#breakers.execute(new URL(url).host, judged, ctx).then((response) => {
      if (refused !== undefined) throw refused.error;
      return response;
    });
  }

  async #exchange(call: Call, url: string, ctx: CallContext): Promise<Response> {
    let response: Response;
    try {
      response = await this.#send(url, attemptInit(call.plan, AbortSignal.any([ctx.signal, call.reading])));
    } catch (error) {
      throw this.#explain(error);
    }
    call.remember(response, url);
    if (this.#statuses.has(response.status)) throw new HttpError(call.plan.method, this.#redact.url(url), response);
    return response;
  }

  /**
   * fetch's TypeError, made to say what happened: `fetch failed: connect ECONNREFUSED ...` with
   * the root cause's `code`, and no credentials or secret parameters. A redirect that fetch
   * refused (a loop, `redirect: 'error'`, a Location with credentials or not http) is not
   * retried, nor held against the host's breaker: it would only be refused again.
   */
  #explain(error: unknown): unknown {
    if (!(error instanceof TypeError)) return error;
    if (error.message === 'fetch failed' && error.cause !== undefined) {
      const root = rootCause(error.cause);
      const explained = new TypeError(`fetch failed: ${this.#redact.text(root.message)}`, { cause: error });
      if (root.code !== undefined) Object.assign(explained, { code: root.code });
      if (refusedRedirect.test(root.message)) refusedRedirects.add(nonRetryable(explained));
      return explained;
    }
    const message = this.#redact.text(error.message);
    return message === error.message ? error : new TypeError(message);
  }

  snapshot(): JsonValue {
    return {
      breakers: this.#breakers?.snapshot() ?? null,
      failover: this.#set?.snapshot() ?? null,
      budget: this.#budget?.snapshot() ?? null,
    } as JsonValue;
  }

  dispose(): void {
    for (const thing of this.#owned.splice(0)) thing.dispose();
  }
}

/** One logical request across its attempts. */
class Call {
  /** The latest response, kept whole so it can be returned if retries run out. */
  last: Response | undefined;
  /** Where the latest response came from: with base URLs, not the path the caller gave. */
  lastUrl: string | undefined;

  constructor(
    readonly client: Client,
    readonly plan: Plan,
    readonly safe: boolean,
    /** Aborts when the caller aborts or the total deadline passes, the body read included. */
    readonly reading: AbortSignal,
  ) {}

  async attempt(url: string, ctx: CallContext): Promise<Response> {
    discard(this.last); // the previous attempt's response will not be read
    this.last = undefined;
    try {
      return await this.client.send(this, url, ctx);
    } catch (error) {
      // Never repeat what is not safe to repeat, on this endpoint or another.
      if (!this.safe && typeof error === 'object' && error !== null && !neverReached(error)) nonRetryable(error);
      throw error;
    }
  }

  remember(response: Response, url: string): void {
    this.last = response;
    this.lastUrl = url;
  }
}

/**
 * `response` with a body that calls `done` once it has been read to the end, has failed or has
 * been cancelled. Status, headers, `url`, `redirected` and `type` are those of `response`.
 */
function whenBodyEnds(response: Response, done: () => void): Response {
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const body = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let chunk: Awaited<ReturnType<typeof reader.read>>;
        try {
          chunk = await reader.read();
        } catch (error) {
          done();
          controller.error(error);
          return;
        }
        if (chunk.done) {
          done();
          controller.close();
        } else {
          controller.enqueue(chunk.value);
        }
      },
      cancel(reason) {
        done();
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 }, // read from the network only as the caller reads
  );
  const watched = new Response(body, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
  for (const key of ['url', 'redirected', 'type'] as const) {
    Object.defineProperty(watched, key, { value: response[key], enumerable: true, configurable: true });
  }
  return watched;
}

/** The HttpError itself, or the one a retry or failover error wraps as its cause. */
function httpErrorIn(error: unknown): HttpError | undefined {
  for (let e = error, depth = 0; typeof e === 'object' && e !== null && depth < 4; e = (e as Error).cause, depth++) {
    if (e instanceof HttpError) return e;
  }
  return undefined;
}

/** The deepest cause of a network failure, with its message and code (an AggregateError's first error). */
function rootCause(error: unknown): { message: string; code: string | undefined } {
  let e = error;
  for (let depth = 0; depth < 5; depth++) {
    const next = (e as { cause?: unknown } | null)?.cause;
    const inner = (e as { errors?: unknown[] } | null)?.errors?.[0];
    if (next === undefined && inner === undefined) break;
    // An AggregateError (every address refused) has no message of its own: its first error says it.
    e = next ?? inner;
  }
  const { message, code } = (e ?? {}) as { message?: unknown; code?: unknown };
  const outer = (error ?? {}) as { code?: unknown };
  return {
    message: typeof message === 'string' && message !== '' ? message : String(e),
    code: typeof code === 'string' ? code : typeof outer.code === 'string' ? outer.code : undefined,
  };
}

/**
 * `retry.backoff` and `retry.jitter` are checked as @holdfast/retry checks them, with or without
 * base URLs. With base URLs (or a failover set) they are refused: a failed try moves at once to
 * another endpoint, so a backoff would be silently ignored.
 */
function checkRetry(o: ParsedFetchOptions, r: Exclude<ParsedFetchOptions['retry'], false | undefined>): void {
  within('retry', () =>
    retry({
      ...(r.backoff ? { backoff: r.backoff } : {}),
      ...(r.jitter ? { jitter: r.jitter } : {}),
      budget: false,
    }),
  );
  if (o.failover === undefined && o.baseUrls === undefined) return;
  const given = (['backoff', 'jitter'] as const).filter((k) => r[k] !== undefined);
  if (given.length === 0) return;
  const by = o.baseUrls ? 'baseUrls' : 'failover';
  throw new HoldfastConfigError(
    'resilientFetch',
    given.map((k) => ({
      path: `retry.${k}`,
      message: `does not apply with ${by}: a failed try moves at once to another endpoint, without waiting`,
      value: r[k],
    })),
  );
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
