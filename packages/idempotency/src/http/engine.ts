import type { IncomingHttpHeaders } from 'node:http';
import {
  type Bus,
  type Clock,
  type ErrorLabel,
  elapsedTime,
  errorLabel,
  bus as globalBus,
  HoldfastConfigError,
  parseOptions,
  realClock,
  shieldBus,
  type TimerHandle,
} from '@holdfast/core';
import { IdempotencyValueError, StoreUnavailableError } from '../errors.js';
import { type HeldLease, LeaseKeeper, sleep } from '../lease.js';
import {
  digestOfPreimage,
  inProcess,
  type KeptRecord,
  keptBodyOf,
  type NowClaimResult,
  type NowToken,
  type StoreNow,
  sameKept,
  storeToken,
} from '../memory-store.js';
import type { ClaimResult, CompletedRecord, IdempotencyStore } from '../store.js';
import {
  BodyCollector,
  type HttpResponse,
  pickHeaders,
  type ReplayableHeaders,
  type ReplaySource,
  replayableHeaders,
  replayOf,
  withLength,
} from './capture.js';
import {
  CanonicalTooLarge,
  canonicalLimit,
  fingerprintOf,
  preimageOf,
  sameFingerprint,
  upperCase,
} from './fingerprint.js';
import { type KeyHeader, parseKeyHeader } from './key.js';
import { type HttpIdempotencyOptions, httpIdempotencyOptionsSchema, type ParsedHttpOptions } from './options.js';
import { problem } from './problem.js';

/** What the middleware needs to know of a request, whatever the framework. */
export interface RequestView {
  readonly method: string;
  /** Path and query as the client sent them. */
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  /** Each header's copies as received, not joined (Node's `req.headersDistinct`), when known. */
  readonly headersDistinct?: NodeJS.Dict<string[]>;
  /** The body's bytes as sent; its parsed value only when a parser consumed them; undefined for none. */
  readonly body: unknown;
  /**
   * What tells this request's route apart from others of its method and URL (a Fastify route's
   * constraints: Accept-Version, Host), part of the fingerprint; undefined where nothing does.
   */
  readonly route?: string | undefined;
}

/**
 * A {@link RequestView} of a Node request: `headersDistinct` is read from it only when asked
 * (Node builds it on first read; the key header needs it only when it came with a comma). A
 * class, not an object literal with a getter: V8 gives each such literal, with its own getter
 * closure, a dictionary of its own, which costs the collector tens of µs a request under load.
 */
export class NodeRequestView implements RequestView {
  constructor(
    readonly method: string,
    readonly url: string,
    readonly headers: IncomingHttpHeaders,
    readonly body: unknown,
    readonly raw: { readonly headersDistinct: NodeJS.Dict<string[]> },
    readonly route: string | undefined = undefined,
  ) {}

  get headersDistinct(): NodeJS.Dict<string[]> {
    return this.raw.headersDistinct;
  }
}

/** What to do with a request. */
export type Decision =
  /** Not ours (no key, fail-open): let it through untouched. */
  | { readonly action: 'pass' }
  /** Answer with this response (a replay or a problem); the handler does not run. */
  | { readonly action: 'respond'; readonly response: HttpResponse }
  /** The key is ours: run the handler, feed its body to `run.body`, then `run.finish()`. */
  | { readonly action: 'run'; readonly run: Run };

export type OutgoingHeaders = Record<string, number | string | readonly string[] | undefined>;

const PASS: Decision = { action: 'pass' };
const SETTLED: Promise<boolean> = Promise.resolve(true);
const NO_HEADERS: readonly string[] = [];

/**
 * Headers whose copies Node's `req.headers` does not join with ", " (node:_http_incoming): it
 * keeps the first copy of most, and joins `cookie` with "; ".
 */
const FIRST_COPY_ONLY: ReadonlySet<string> = new Set([
  'age',
  'cookie',
  'authorization',
  'content-length',
  'content-type',
  'etag',
  'expires',
  'from',
  'host',
  'if-modified-since',
  'if-unmodified-since',
  'last-modified',
  'location',
  'max-forwards',
  'proxy-authorization',
  'referer',
  'retry-after',
  'server',
  'user-agent',
]);

/**
 * The framework-free middleware: reads the key, claims it, and tells an adapter to pass, to
 * answer, or to run the handler and report its response. Adapters only translate.
 */
export class HttpIdempotency<Req> implements RunOwner {
  readonly options: ParsedHttpOptions;
  readonly store: IdempotencyStore;
  readonly bus: Bus;
  readonly clock: Clock;
  /** The clock's monotonic time: waits, completion retries and leases are measured on it, not on `now()`. */
  readonly elapsed: () => number;
  readonly failOpen: boolean;
  readonly #methods: ReadonlySet<string>;
  readonly #replayable: ReplayableHeaders;
  // A HEAD response's Content-Length is the GET body's, not its own empty body's: kept for its replay.
  readonly #replayableHead: ReplayableHeaders;
  readonly #owner: string;
  /** The longest canonical form of a parsed body fingerprinted (see canonicalLimit). */
  readonly #canonicalLimit: number;
  // An in-process store's calls without a promise: a request settled by them costs no tick and
  // no promise, and no timer is raced against it. Asked again at each call (see #inProcess).
  readonly #now: StoreNow | undefined;
  /** The in-process store reads the time on this middleware's line: its claim's `at` is this run's start. */
  readonly #claimClock: boolean;
  // Node does not join copies of some headers with ", " in `req.headers`: for those, copies are
  // counted from `headersDistinct` every time.
  readonly #joinDrops: boolean;
  // Renews the leases of running handlers; none for a store without `extend`.
  readonly #keeper: LeaseKeeper | undefined;

  constructor(owner: string, input: HttpIdempotencyOptions<Req>) {
    this.#owner = owner;
    this.options = parseOptions(owner, httpIdempotencyOptionsSchema, input);
    this.store = this.options.store;
    this.bus = shieldBus(this.options.bus ?? globalBus, this.options.name);
    this.clock = this.options.clock ?? realClock;
    this.elapsed = elapsedTime(this.clock);
    this.failOpen = (this.options.onStoreError ?? this.store.onStoreError ?? 'fail-closed') === 'fail-open';
    this.#methods = new Set(this.options.methods);
    this.#replayable = replayableHeaders(this.options.replayHeaders);
    this.#replayableHead = withLength(this.#replayable);
    this.#now = inProcess(this.store);
    // One line only if the clock object gave both the same (elapsedTime decides when each is
    // made, by whether the clock has `monotonic` then).
    this.#claimClock = this.#now?.clock === this.clock && this.#now.monotonic === (this.clock.monotonic !== undefined);
    this.#joinDrops = FIRST_COPY_ONLY.has(this.options.header);
    this.#canonicalLimit = canonicalLimit(this.options.maxRequestBytes);
    const { leaseMs, maxRunMs } = this.options;
    if (LeaseKeeper.renews(this.store, leaseMs, maxRunMs)) {
      this.#keeper = new LeaseKeeper(this.store, this.clock, this.elapsed, leaseMs, maxRunMs, this.options.name);
    }
  }

  /**
   * @internal Renews `run`'s lease until it settles; returns the lease, whose `drop()` stops it
   * (undefined: a store without `extend`). Past `maxRunMs` the response-lost problem is stored for
   * its key (a safe method's key is released), so a retry gets that, never a second run of the
   * handler: tried again at each tick while the store fails (see {@link Run.cap}).
   */
  renew(run: Run): RunLease | undefined {
    const keeper = this.#keeper;
    if (keeper === undefined) return undefined;
    const lease = new RunLease(keeper, run);
    keeper.hold(lease);
    return lease;
  }

  /** @internal The keeper found `key`'s lease lost to another owner, or capped it at `maxRunMs`. */
  leaseLost(key: string, reason: 'notOwner' | 'maxRunMs'): void {
    if (this.bus.wants('idempotency.leaseLost')) this.bus.emit(this.#event('idempotency.leaseLost', { key, reason }));
  }

  /** @internal A renewal of `key`'s lease failed (tried again at the keeper's next tick). */
  leaseFailed(key: string, error: unknown, operation: 'extend' | 'complete'): void {
    this.#storeError(operation, key, error, true);
  }

  /**
   * The key as stored (see storedKey). One asked for before the decision (`keep`: Fastify's
   * preParsing), and any with the global scope, is kept: the decision asks again, and the same
   * string, its hash already computed, finds the record in a Map at once. A scoped one asked for
   * by the decision alone is not kept (three stores of new strings into this long-lived object,
   * each with its write barrier, for nobody to read).
   */
  #stored(scope: string | undefined, key: string, keep = scope === undefined): string {
    if (key === this.#lastKey && scope === this.#lastScope) return this.#lastStored;
    const stored = storedKey(scope, key);
    if (keep) {
      this.#lastStored = stored;
      this.#lastKey = key;
      this.#lastScope = scope;
    }
    return stored;
  }

  #lastKey: string | undefined;
  #lastScope: string | undefined;
  #lastStored = '';

  /**
   * The store's calls without a promise, while its methods are still its class's own: a method
   * patched on the store after this middleware was made (a spy, an outage drill) is called, and
   * timed, like any store's.
   */
  #inProcess(): StoreNow | undefined {
    const now = this.#now;
    return now?.serves(this.store) ? now : undefined;
  }

  /** Whether requests of this method are guarded at all. */
  guards(method: string): boolean {
    // Node hands every request of a method the same string: the last one's answer is kept (two
    // Set lookups, and a `toUpperCase()` for an unguarded one, at each of two hooks before).
    if (method !== this.#guardedSeen) {
      this.#guarded = this.#methods.has(method) || this.#methods.has(upperCase(method));
      this.#guardedSeen = method;
    }
    return this.#guarded;
  }

  #guardedSeen: string | undefined;
  #guarded = false;

  /**
   * What the request's key header says (cheap: adapters call it before reading a body). Read
   * from the copies as received when the view has them: a header sent twice is refused, even
   * when one copy is empty (which Node's joined value hides). `headers`: the view's, read
   * already (Node's `req.headers` is a getter whose keyed load is megamorphic on a server).
   */
  key(
    view: Pick<RequestView, 'headers' | 'headersDistinct'>,
    headers: IncomingHttpHeaders = view.headers,
  ): ReturnType<typeof parseKeyHeader> {
    const name = this.options.header;
    const joined = headers[name];
    // Node joins copies of a header with ", " (or keeps only the first, for the few it drops):
    // one copy without a comma is the field as sent, with no need to build `headersDistinct`.
    if (typeof joined === 'string' && !this.#joinDrops) {
      const parsed = parseKeyHeader(joined);
      // A valid bare key is the whole field, and has no comma: no copies were joined into it (a
      // search for one cost a builtin call a request). Any other reading is checked for a comma.
      if (parsed.status === 'ok' && parsed.key === joined) return parsed;
      if (!joined.includes(',')) return parsed;
    }
    // Not sent at all (every copy lands in `headers`, joined or the first kept): nothing to count.
    if (joined === undefined) return parseKeyHeader(undefined);
    return parseKeyHeader(view.headersDistinct?.[name] ?? joined);
  }

  /**
   * Whether a request with this key header passes untouched (no key, and none required), known
   * without a store call or a tick: an adapter lets it through at once.
   */
  passes(header: KeyHeader): boolean {
    return header.status === 'missing' && !this.options.required;
  }

  /**
   * Decides what to do with a request. Rejects only if `scope(req)` throws or returns anything
   * but a non-empty string (a `HoldfastConfigError`): never a silent shared space. `header`:
   * what {@link key} said of this request's view, when the adapter asked already.
   */
  async decide(req: Req, view: RequestView, header = this.key(view)): Promise<Decision> {
    return this.decideNow(req, view, header);
  }

  /**
   * {@link decide}, answered without a promise (or a tick) when it can be: a request without a
   * valid key, and, on an in-process store, every request that need not wait whose scope is
   * 'global' or a string a scope function returned. A scope that throws, or gives no non-empty
   * string, is a rejection; anything else throws where `decide` rejects. `held`: the runs this
   * request holds already (another registration of the adapter): one on this store with its key
   * makes this one pass. `asked`: what {@link askScope} gave for this request (a string), so
   * `scope` is not called again.
   */
  decideNow(
    req: Req,
    view: RequestView,
    header = this.key(view),
    held?: readonly Run[],
    asked?: string,
  ): Decision | Promise<Decision> {
    if (!this.guards(view.method)) return PASS;
    if (header.status === 'missing') return this.options.required ? respond(problem('missingKey')) : PASS;
    if (header.status === 'invalid') return respond(problem('invalidKey', { detail: header.reason }));
    // 'global' is known at once, and so is a scope function's string: no tick spent awaiting it.
    if (this.options.scope !== 'global') {
      const scope = asked ?? this.#scopeNow(req);
      if (typeof scope === 'string') return this.#decideIn(scope, view, header.key, held);
      return scope.then((known) => this.#decideIn(known, view, header.key, held));
    }
    return this.#decideIn(undefined, view, header.key, held);
  }

  /**
   * `scope(req)` asked now, for an adapter that asks it before the body is read (Fastify's
   * `scopeAt: 'preParsing'`): a non-empty string, or a promise of one (rejected as
   * {@link decide} rejects); undefined for the global scope. The adapter hands it back to
   * {@link decideNow} and {@link replayNow}: one call of `scope` a request.
   */
  askScope(req: Req): string | Promise<string> | undefined {
    return this.options.scope === 'global' ? undefined : this.#scopeNow(req);
  }

  /**
   * Whether {@link replayNow} may answer a request with this key: an in-process store that holds
   * a completed response under it now, in the global scope or in `scope`, what {@link askScope}
   * gave (no early replay without it: a scope function may read what the body's parsing sets).
   * An adapter that can answer before the framework parses the body asks this first (before
   * reading the body).
   */
  mayReplayNow(header: KeyHeader, scope?: string): boolean {
    if (header.status !== 'ok' || (this.options.scope !== 'global' && scope === undefined)) return false;
    const completed = this.#inProcess()?.completed;
    if (completed === undefined) return false;
    try {
      return completed(this.#stored(scope, header.key, true))?.kind === 'response';
    } catch {
      return false;
    }
  }

  /**
   * The replay of the completed response stored under `header`'s key when this request is the one
   * that stored it (its fingerprint the same), with its 'idempotency.replay' event; undefined
   * otherwise, having claimed, answered and emitted nothing: the request then takes its usual way
   * ({@link decideNow}). In-process store only; `scope` as for {@link mayReplayNow}.
   */
  replayNow(view: RequestView, header: KeyHeader, scope?: string): Decision | undefined {
    if (!this.guards(view.method) || header.status !== 'ok') return undefined;
    if (this.options.scope !== 'global' && scope === undefined) return undefined;
    const completed = this.#inProcess()?.completed;
    if (completed === undefined) return undefined;
    const stored = this.#stored(scope, header.key);
    let record: KeptRecord | undefined;
    let fingerprint: string | Decision;
    let preimage: string | undefined;
    try {
      record = completed(stored);
      if (record?.kind !== 'response') return undefined;
      preimage = preimageIn(view, this.options.fingerprint);
      fingerprint = preimage ?? this.#fingerprint(view);
    } catch {
      return undefined;
    }
    const raw = preimage !== undefined;
    if (typeof fingerprint !== 'string' || !sameKept(record, fingerprint, raw)) {
      return undefined;
    }
    return this.#decided(
      header.key,
      stored,
      fingerprint,
      { status: 'completed', record },
      true,
      view.method,
      undefined,
      raw,
    );
  }

  /** The request's fingerprint, or the 413 answer for a parsed body too long to fingerprint. */
  #fingerprint(view: RequestView): string | Decision {
    try {
      return fingerprintOf(
        view.method,
        view.url,
        headerValue(view.headers['content-type']),
        headerValue(view.headers['content-encoding']),
        view.body,
        selectedIn(view, this.options.fingerprint),
        this.#canonicalLimit,
      );
    } catch (error) {
      // A parsed body (a parser before us) whose references make it too long to fingerprint.
      if (error instanceof CanonicalTooLarge) return respond(problem('tooLarge'));
      throw error;
    }
  }

  #decideIn(
    scope: string | undefined,
    view: RequestView,
    key: string,
    held: readonly Run[] | undefined,
  ): Decision | Promise<Decision> {
    const now = this.#inProcess();
    // An in-process store keeps a short request's fingerprinted bytes as they are, unhashed.
    const preimage = now?.claimPreimage === undefined ? undefined : preimageIn(view, this.options.fingerprint);
    const fingerprint = preimage ?? this.#fingerprint(view);
    if (typeof fingerprint !== 'string') return fingerprint;
    const stored = this.#stored(scope, key);
    // This request holds the key already, on this store (the adapter registered twice, one
    // inside the other): that run stores its response. Asked again, the store said 409.
    if (held?.some((run) => run.stored === stored && run.owner.store === this.store)) return PASS;
    if (now !== undefined) {
      // The store answers at once. What it cannot settle now (a wait for a running claim, a
      // failure) takes the general path, which asks again: a claim changes nothing then.
      let result: NowClaimResult | undefined;
      try {
        result =
          preimage === undefined
            ? now.claim(stored, fingerprint, this.options.leaseMs)
            : (now.claimPreimage as NonNullable<StoreNow['claimPreimage']>)(stored, preimage, this.options.leaseMs);
      } catch {
        result = undefined;
      }
      if (result !== undefined && (result.status !== 'inProgress' || this.options.wait === undefined)) {
        // Claimed on this middleware's clock: the store's reading is the run's start (not read again).
        const at = result.status === 'claimed' && this.#claimClock ? result.at : undefined;
        return this.#decided(key, stored, fingerprint, result, true, view.method, at, preimage !== undefined);
      }
    }
    // The general path asks the store's methods, which take a fingerprint.
    return this.#claim(key, stored, preimage === undefined ? fingerprint : digestOfPreimage(preimage), view.method);
  }

  /**
   * `scope(req)` (a function: not 'global'), as it returned it when that is a non-empty string:
   * the decision goes on at once. (Awaited always, a scope function cost every request a promise
   * and a tick, and Fastify a read of `reply.sent` after it: about 2,500 instructions a request,
   * first or replay, bench/http-instructions.ts `scoped-first` and `scoped-replay`.)
   * Anything else, thrown or returned, is settled by {@link #scopeOf}.
   */
  #scopeNow(req: Req): string | Promise<string> {
    const scope = this.options.scope as Exclude<HttpIdempotencyOptions<Req>['scope'], 'global'>;
    let value: unknown;
    try {
      value = scope(req);
    } catch (error) {
      return this.#scopeOf(Promise.reject(error));
    }
    return typeof value === 'string' && value !== '' ? value : this.#scopeOf(value);
  }

  /** What `scope(req)` gave (`returned`: its value, a promise of one, or a rejection of what it threw), settled. */
  async #scopeOf(returned: unknown): Promise<string> {
    let value: unknown;
    let did = 'returned';
    try {
      value = await returned;
    } catch (error) {
      // An object (an Error, an HTTP error of the app's) goes to the app's error handler as it is.
      // Anything else is no error to the frameworks: a falsy one to Express's `next()` and
      // Fastify's hook `done()`, and 'route' or 'router' to Express's, sent the request on to the
      // handler unclaimed, and every retry ran it again.
      if (typeof error === 'object' && error !== null) throw error;
      value = error;
      did = 'threw';
    }
    if (did === 'returned' && typeof value === 'string' && value !== '') return value;
    // The value itself may be a secret or a user object: name its type only.
    const got = value === '' ? 'an empty string' : value === null ? 'null' : typeof value;
    throw new HoldfastConfigError(this.#owner, [
      {
        path: 'scope',
        message: `${did} ${got} for a ${this.options.header} request; it must return a non-empty string naming the caller (authenticate first), or be 'global' to share one key space`,
        value: undefined,
      },
    ]);
  }

  async #claim(key: string, stored: string, fingerprint: string, method: string): Promise<Decision> {
    const wait = this.options.wait;
    const deadline = wait === undefined ? 0 : this.elapsed() + wait.timeout;
    for (;;) {
      let result: ClaimResult;
      // A lease starts when the store runs the claim, which is after it was sent, not when its
      // answer came (a slow reply): the run's timers count from here.
      const sentAt = this.elapsed();
      try {
        result =
          this.#inProcess() !== undefined
            ? await this.store.claim(stored, fingerprint, this.options.leaseMs)
            : await this.#call(
                'claim',
                key,
                () => this.store.claim(stored, fingerprint, this.options.leaseMs),
                // A claim that wins after we gave up on it would hold the key for a whole lease: free it.
                (late) => {
                  if (late.status === 'claimed') this.store.release(stored, late.token).catch(() => {});
                },
              );
      } catch (error) {
        // A store that refuses to claim (it would break the guarantee) is no outage to pass through.
        const open = this.failOpen && !(error instanceof StoreUnavailableError && error.refused);
        this.#storeError('claim', key, error, open);
        return open ? PASS : respond(problem('storeUnavailable', { retryAfterSeconds: 1 }));
      }
      if (result.status !== 'inProgress') return this.#decided(key, stored, fingerprint, result, false, method, sentAt);
      const left = deadline - this.elapsed();
      if (wait === undefined || left <= 0) return this.#conflict(key, wait !== undefined);
      await sleep(this.clock, Math.min(wait.interval, left));
    }
  }

  /**
   * What a store's answer means for the request (a running claim: a conflict, not waited for).
   * `shared`: a completed record is the store's own, as it keeps it (its call without a
   * promise), not a copy.
   * `method`: the request's.
   * `sentAt`: when the claim was sent, on `elapsed()` (by default, now).
   */
  #decided(
    key: string,
    stored: string,
    fingerprint: string,
    result: ClaimResult | NowClaimResult,
    shared: boolean,
    method: string,
    sentAt?: number,
    raw = false,
  ): Decision {
    // Claimed: the run. Any other answer is #answered's, apart: V8 inlines this whole into its
    // caller, and the Run constructor into it, only while it is small (with the replay's branch
    // here, a scoped first request's claim paid a generic construct: ~300 instructions).
    if (result.status !== 'claimed') return this.#answered(key, fingerprint, result, shared, method, raw);
    this.#emitClaim(key, result.takeover);
    return {
      action: 'run',
      run: new Run(
        this,
        key,
        stored,
        result.token,
        isHead(method) ? this.#replayableHead : this.#replayable,
        this.options.maxResponseBytes,
        // Shared: claimed by the in-process store's own calls just now (asked once already).
        shared || this.#inProcess() !== undefined,
        sentAt,
        isSafe(method),
      ),
    };
  }

  /** {@link #decided} for an answer that runs nothing: a replay, a mismatch, a conflict. */
  #answered(
    key: string,
    fingerprint: string,
    result: Exclude<ClaimResult | NowClaimResult, { readonly status: 'claimed' }>,
    shared: boolean,
    method: string,
    raw: boolean,
  ): Decision {
    switch (result.status) {
      case 'completed': {
        const { record } = result;
        // An in-process store's own record holds its outcome; a copy handed out has one apart.
        const outcome = shared ? (record as KeptRecord) : (record as CompletedRecord).outcome;
        // The store compared fingerprints already; compare again before replaying: in constant
        // time for a store that answers from elsewhere; as the in-process store compared them
        // (`===`: a constant-time loop after it hid nothing, and cost a replay about 1,300
        // instructions, two character reads a character).
        if (
          outcome.kind !== 'response' ||
          !(shared
            ? sameKept(record as KeptRecord, fingerprint, raw)
            : sameFingerprint(record.fingerprint, fingerprint))
        ) {
          return this.#mismatch(key);
        }
        if (this.bus.wants('idempotency.replay')) this.#emitReplay(key, record, shared);
        return respond(
          replayOf(
            outcome as ReplaySource,
            shared,
            isHead(method),
            shared ? keptBodyOf(record as KeptRecord) : undefined,
          ),
        );
      }
      case 'mismatch':
        return this.#mismatch(key);
      default:
        return this.#conflict(key, false);
    }
  }

  #conflict(key: string, waited: boolean): Decision {
    if (this.bus.wants('idempotency.conflict')) this.bus.emit(this.#event('idempotency.conflict', { key, waited }));
    return respond(problem('inProgress', { retryAfterSeconds: 1 }));
  }

  #mismatch(key: string): Decision {
    if (this.bus.wants('idempotency.mismatch')) this.bus.emit(this.#event('idempotency.mismatch', { key }));
    return respond(problem('mismatch'));
  }

  /**
   * The 'idempotency.replay' event. An in-process record keeps its times from the store's epoch:
   * the store tells its date. (Apart from #decided, which V8 inlines whole only while it is small.)
   */
  #emitReplay(key: string, record: KeptRecord | CompletedRecord, shared: boolean): void {
    const createdAt = shared
      ? (this.#now as StoreNow).createdAt(record as KeptRecord)
      : (record as CompletedRecord).createdAt;
    this.bus.emit(this.#event('idempotency.replay', { key, createdAt }));
  }

  #emitClaim(key: string, takeover: boolean): void {
    if (this.bus.wants('idempotency.claim')) this.bus.emit(this.#event('idempotency.claim', { key, takeover }));
    if (takeover && this.bus.wants('idempotency.takeover')) {
      this.bus.emit(this.#event('idempotency.takeover', { key }));
    }
  }

  /** Runs a store call, failing with `E_STORE_UNAVAILABLE` if it takes longer than `storeTimeoutMs`. */
  #call<T>(
    operation: 'claim' | 'complete' | 'release',
    key: string,
    fn: () => Promise<T>,
    onLate?: (value: T) => void,
  ): Promise<T> {
    if (this.#inProcess() !== undefined) {
      try {
        return fn();
      } catch (error) {
        return Promise.reject(error);
      }
    }
    const ms = this.options.storeTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      let timedOut = false;
      const timer = this.clock.setTimeout(() => {
        timedOut = true;
        reject(new StoreUnavailableError(this.options.name, operation, key, `no answer within ${ms} ms`));
      }, ms);
      const done = () => this.clock.clearTimeout(timer);
      let call: Promise<T>;
      try {
        call = fn();
      } catch (error) {
        call = Promise.reject(error);
      }
      call.then(
        (value) => {
          done();
          if (timedOut) onLate?.(value);
          else resolve(value);
        },
        (error) => {
          done();
          reject(error);
        },
      );
    });
  }

  /** @internal Says on the bus that a run's response was lost (see {@link Run.lost}). */
  lost(key: string, sent: number | undefined): void {
    if (this.bus.wants('idempotency.lost')) this.bus.emit(this.#event('idempotency.lost', { key, sent }));
  }

  /**
   * @internal Stores a finished response, or releases its key. Never rejects; false when the
   * store failed to take the response for `completeTimeoutMs` (`within`).
   */
  settle(
    run: Run,
    response: { status: number; headers: OutgoingHeaders } | undefined,
    code: ErrorLabel,
    within = this.options.completeTimeoutMs,
  ): Promise<boolean> {
    const now = this.#inProcess();
    return now !== undefined && this.#settleNow(now, run, response, code)
      ? SETTLED
      : this.#settle(run, response, code, within);
  }

  /**
   * {@link settle} on an in-process store, at once. False, with nothing changed, when the store
   * refused (a value it cannot keep, a disposed store): the general path then asks again and
   * handles the refusal.
   */
  #settleNow(
    now: StoreNow,
    run: Run,
    response: { status: number; headers: OutgoingHeaders } | undefined,
    code: ErrorLabel,
  ): boolean {
    const { stored, key, token } = run;
    if (response !== undefined && code === undefined) {
      let saved: boolean;
      try {
        // Made for this call (headers picked into a new object, the body's bytes collected as
        // copies, or as a string of them): handed over, not copied again.
        saved = now.completeResponse(
          stored,
          token,
          response.status,
          pickHeaders(response.headers, run.replayable),
          run.body.text() ?? run.body.bytes(),
          this.options.ttlMs,
        );
      } catch {
        return false;
      }
      if (!saved && this.bus.wants('idempotency.staleCompletion')) {
        this.bus.emit(this.#event('idempotency.staleCompletion', { key }));
      }
      return true;
    }
    try {
      now.release(stored, token);
    } catch {
      return false;
    }
    if (this.bus.wants('idempotency.release')) this.bus.emit(this.#event('idempotency.release', { key, code }));
    return true;
  }

  #outcome(run: Run, response: { status: number; headers: OutgoingHeaders }) {
    return {
      kind: 'response',
      status: response.status,
      headers: pickHeaders(response.headers, run.replayable),
      body: run.body.bytes(),
    } as const;
  }

  async #settle(
    run: Run,
    response: { status: number; headers: OutgoingHeaders } | undefined,
    code: ErrorLabel,
    within: number,
  ): Promise<boolean> {
    const { stored, key, token } = run;
    if (response !== undefined && code === undefined) {
      const saved = await this.#complete(run, this.#outcome(run, response), within);
      if (saved === false && this.bus.wants('idempotency.staleCompletion')) {
        this.bus.emit(this.#event('idempotency.staleCompletion', { key }));
      }
      if (saved !== 'unstorable') return saved !== 'failed';
      code = 'E_IDEMPOTENCY_VALUE';
    }
    if (this.bus.wants('idempotency.release')) this.bus.emit(this.#event('idempotency.release', { key, code }));
    try {
      await this.#call('release', key, () => this.store.release(stored, storeToken(token)));
    } catch (error) {
      this.#storeError('release', key, error, true);
    }
    return true;
  }

  /**
   * Completes a run, retrying a store failure (a failover, a lost reply) for up to `within` ms
   * from the first failure (`completeTimeoutMs`; 0: once). Safe to resend: a completion is fenced by the run's token, and a store
   * that already took it answers true again. 'unstorable': the store refused the value itself.
   */
  async #complete(
    run: Run,
    outcome: Parameters<IdempotencyStore['complete']>[2],
    within: number,
  ): Promise<boolean | 'failed' | 'unstorable'> {
    const { stored, key } = run;
    const token = storeToken(run.token);
    // From the first failure (no clock read for a completion the store takes at once).
    let deadline: number | undefined;
    for (let attempt = 0; ; attempt++) {
      try {
        if (this.#inProcess() !== undefined)
          return await this.store.complete(stored, token, outcome, this.options.ttlMs);
        return await this.#call('complete', key, () => this.store.complete(stored, token, outcome, this.options.ttlMs));
      } catch (error) {
        deadline ??= this.elapsed() + within;
        const retry = error instanceof StoreUnavailableError && this.elapsed() < deadline;
        this.#storeError('complete', key, error, true);
        if (error instanceof IdempotencyValueError) return 'unstorable';
        if (!retry) return 'failed';
        await sleep(this.clock, Math.min(100 * 2 ** attempt, 1_000, deadline - this.elapsed()));
      }
    }
  }

  /** Why a response is not stored, or undefined when it is. */
  verdict(status: number, body: BodyCollector): ErrorLabel {
    if (!body.storable) return 'E_RESPONSE_TOO_LARGE';
    if (status >= 500 && !this.options.store5xx) return `HTTP_${status}`;
    return undefined;
  }

  #storeError(
    operation: 'claim' | 'complete' | 'release' | 'extend',
    key: string,
    error: unknown,
    failOpen: boolean,
  ): void {
    if (this.bus.wants('idempotency.storeError')) {
      this.bus.emit(this.#event('idempotency.storeError', { key, operation, code: errorLabel(error), failOpen }));
    }
  }

  // Object.assign, not a spread: on Node 20, V8 gives an object spread into a literal with more
  // properties a map of its own, about 1 µs and a collector's burden per event.
  #event<T extends string, F extends object>(type: T, fields: F): { type: T; source: string; time: number } & F {
    return Object.assign({ type, source: this.options.name, time: this.clock.now() }, fields);
  }
}

interface RunOwner {
  readonly store: IdempotencyStore;
  readonly clock: Clock;
  readonly elapsed: () => number;
  readonly options: { readonly leaseMs: number; readonly store5xx: boolean };
  renew(run: Run): RunLease | undefined;
  leaseLost(key: string, reason: 'notOwner' | 'maxRunMs'): void;
  leaseFailed(key: string, error: unknown, operation: 'extend' | 'complete'): void;
  verdict(status: number, body: BodyCollector): ErrorLabel;
  lost(key: string, sent: number | undefined): void;
  settle(
    run: Run,
    response: { status: number; headers: OutgoingHeaders } | undefined,
    code: ErrorLabel,
    within?: number,
  ): Promise<boolean>;
}

/** One claimed key: the handler runs, and its response is stored or its key released, once. */
export class Run {
  // Replaced once, by the response-lost problem (see lost()).
  body: BodyCollector;
  #settled = false;
  /**
   * When the key was claimed (its claim sent), on the owner's monotonic line (`elapsed()`): its
   * lease runs out `leaseMs` later at the latest.
   */
  readonly claimedAt: number;
  // Set while its client is gone and the handler may still end the response (see lostUnlessEnded).
  #lostTimer: TimerHandle | undefined;
  // Its renewed lease, dropped when it settles (undefined: the store cannot renew one).
  readonly #lease: RunLease | undefined;

  constructor(
    readonly owner: RunOwner,
    readonly key: string,
    readonly stored: string,
    /** Its number where the store's calls without a promise claimed it (see NowToken). */
    readonly token: NowToken,
    readonly replayable: ReplayableHeaders,
    maxResponseBytes: number,
    /**
     * The store answers in this process: `finish` and `abandon` have changed the record by the
     * time they return (the store's calls run synchronously; what follows, an event or the
     * release of an unstorable value, runs in microtasks, before any other request is read).
     * An adapter need not hold the response back until they resolve.
     */
    readonly atOnce = false,
    /** When its claim was sent, on `elapsed()`; by default, now. */
    claimedAt?: number,
    /** Its method is safe (GET, HEAD, OPTIONS, TRACE): running it again does no harm. */
    readonly safe = false,
  ) {
    this.body = new BodyCollector(maxResponseBytes);
    this.claimedAt = claimedAt ?? owner.elapsed();
    this.#lease = owner.renew(this);
  }

  /** Whether `finish` or `abandon` was called. */
  get settled(): boolean {
    return this.#settled;
  }

  /**
   * The response is complete (its body fed to `body`): stores it, or releases the key for a
   * 5xx or an oversized body. Resolves once the store has answered (bounded by its timeout):
   * false if it never took the response (`completeTimeoutMs`).
   */
  finish(status: number, headers: OutgoingHeaders): Promise<boolean> {
    if (this.#settled) return SETTLED;
    this.#settle();
    const code = this.owner.verdict(status, this.body);
    return this.owner.settle(this, { status, headers }, code);
  }

  /**
   * A response the framework sent while the handler still runs (its handler timeout's 5xx). The
   * key stays claimed until the handler settles, so a retry cannot run alongside it. If the
   * handler then succeeds, its effect happened: this response is stored as the key's answer,
   * whatever its status, so a retry gets it instead of running the handler a second time. If
   * it fails, this response is what a failed handler's would be: stored with `store5xx`, else
   * the key is released. Without the handler's promise (a handler that returned none), its
   * end cannot be known: the response is stored at once.
   */
  finishAfter(status: number, headers: OutgoingHeaders, handler: PromiseLike<unknown> | undefined): Promise<boolean> {
    if (this.#settled) return SETTLED;
    this.#settle();
    const store = () =>
      this.owner.settle(this, { status, headers }, this.body.storable ? undefined : 'E_RESPONSE_TOO_LARGE');
    if (handler === undefined) return store();
    return Promise.resolve(handler).then(store, () =>
      this.owner.settle(this, { status, headers }, this.owner.verdict(status, this.body)),
    );
  }

  /**
   * The handler ran, so its effect may have happened, and its response can never be stored whole
   * (cut off when its client left, or written where it was not seen). A problem that says so
   * (500, `idempotency-response-lost`) is stored for the key, whatever `store5xx` says: a retry
   * gets it, never a second run. Releasing the key instead ran the handler again. `sent`: the
   * status already sent, if it was: a 5xx is the handler's failure, released (unless `store5xx`)
   * as a whole one is. A safe method's key is released: it has no effect to guard, and its retry
   * gets a real answer instead of the problem.
   */
  lost(sent?: number): Promise<boolean> {
    if (sent !== undefined && sent >= 500 && !this.owner.options.store5xx) return this.abandon(`HTTP_${sent}`);
    if (this.safe) return this.abandon('E_INCOMPLETE');
    if (this.#settled) return SETTLED;
    this.#settle();
    return this.owner.settle(this, this.#becomeLost(sent), undefined);
  }

  /**
   * @internal `maxRunMs` passed (the lease keeper's cap): {@link lost}, its lease kept until the
   * problem is stored. One store call (no `completeTimeoutMs` of retries): false when it failed,
   * and the keeper tries again at its next tick, the lease renewed meanwhile. (Renewal stopped at
   * the first try: with the store down then, the key expired at the lease's end, and a retry ran
   * the handler again while it could still be running.) Settled at the first try: the handler's
   * own end changes nothing after it.
   */
  cap(): Promise<boolean> {
    if (this.safe) return this.abandon('E_INCOMPLETE');
    let response: { status: number; headers: OutgoingHeaders } = problem('responseLost');
    if (!this.#settled) {
      this.#settled = true;
      response = this.#becomeLost(undefined);
    }
    return this.owner.settle(this, response, undefined, 0);
  }

  /** The response-lost problem becomes the run's response (its body collected); said on the bus. */
  #becomeLost(sent: number | undefined): { status: number; headers: OutgoingHeaders } {
    const { status, headers, body } = problem('responseLost');
    this.body = new BodyCollector(body.length);
    this.body.add(body);
    this.owner.lost(this.key, sent);
    return { status, headers };
  }

  /**
   * Its client left before the response ended: the handler may still end it, and it is then
   * stored whole. A renewed lease does not run out while the process lives: the handler has until
   * `maxRunMs`, when the keeper stores {@link lost} (storing it at the lease's end made a slow
   * handler's response, ended after its client timed out, a 500 for good). A fixed lease: if it
   * has not ended it shortly before the lease runs out (after which a retry would take the key
   * over and run the handler again), {@link lost} is stored. The timer holds nothing open.
   * `sent`: the status sent by then, if any (see {@link lost}).
   */
  lostUnlessEnded(sent: () => number | undefined): void {
    if (this.#settled || this.#lostTimer !== undefined || this.#lease !== undefined) return;
    const { clock, options, elapsed } = this.owner;
    const margin = Math.min(1_000, options.leaseMs / 10);
    const ms = Math.max(0, this.claimedAt + options.leaseMs - margin - elapsed());
    this.#lostTimer = clock.setTimeout(() => void this.lost(sent()), ms);
  }

  /** Marks the run settled, and stops its response-lost timer: a run that ended first is not held for the lease. */
  #settle(): void {
    this.#settled = true;
    if (this.#lostTimer !== undefined) this.owner.clock.clearTimeout(this.#lostTimer);
    this.#lease?.drop();
  }

  /** No complete response will come (the handler threw, the stream broke): releases the key. */
  abandon(code: ErrorLabel): Promise<boolean> {
    if (this.#settled) return SETTLED;
    this.#settle();
    return this.owner.settle(this, undefined, code ?? 'E_INCOMPLETE');
  }
}

/**
 * A run's lease as the keeper renews it: one object a claimed request, its methods on the
 * prototype (an object literal of three closures, and a fourth to drop it, cost every claimed
 * request about 250 bytes more for the collector).
 */
class RunLease implements HeldLease {
  older: HeldLease | undefined = undefined;
  newer: HeldLease | undefined = undefined;
  held = false;

  constructor(
    readonly keeper: LeaseKeeper,
    readonly run: Run,
  ) {}

  // Read from the run, not copied: three fields (and a boxed number) less a claimed request.
  get stored(): string {
    return this.run.stored;
  }

  get token(): NowToken {
    return this.run.token;
  }

  get since(): number {
    return this.run.claimedAt;
  }

  lost(): void {
    this.run.owner.leaseLost(this.run.key, 'notOwner');
  }

  cap(): Promise<boolean> {
    if (!this.run.settled) this.run.owner.leaseLost(this.run.key, 'maxRunMs');
    return this.run.cap();
  }

  failed(error: unknown, operation: 'extend' | 'complete'): void {
    this.run.owner.leaseFailed(this.run.key, error, operation);
  }

  /** The run settled: its lease is no longer renewed. */
  drop(): void {
    this.keeper.drop(this);
  }
}

function respond(response: HttpResponse): Decision {
  return { action: 'respond', response };
}

/** {@link preimageOf} of a request's view, with the values of the `fingerprint` headers. */
function preimageIn(view: RequestView, names: readonly string[]): string | undefined {
  return preimageOf(
    view.method,
    view.url,
    headerValue(view.headers['content-type']),
    headerValue(view.headers['content-encoding']),
    view.body,
    selectedIn(view, names),
  );
}

/**
 * The values the fingerprint covers besides method, URL, type, encoding and body: the headers
 * named in the `fingerprint` option, then what tells the request's route apart, if anything.
 */
function selectedIn(view: RequestView, names: readonly string[]): readonly (string | string[] | undefined)[] {
  const route = view.route;
  if (names.length === 0) return route === undefined ? NO_HEADERS : [route];
  const values: (string | string[] | undefined)[] = names.map((name) => view.headers[name]);
  if (route !== undefined) values.push(route);
  return values;
}

/**
 * The store key: the scope and the client's key, length-prefixed so no two pairs collide. One
 * flat string: `+` and templates give a tree of cons strings over the parts (the header's own
 * string among them) when the result is 13 characters or longer, and a store keeps the key, so
 * each record kept the tree (one object more to copy in each young collection with the global
 * scope, three more with a scope function: 420 bytes retained a record against 393 with the
 * global scope, bench/http-retained.ts; test/http-record-bytes.test.ts). Reading a character of
 * the tree makes V8 flatten it, in place: the tree's root then points at one flat copy, which the
 * next young collection keeps in its place (the tree is dropped): 394 bytes retained a record,
 * as with Array#join, which writes the flat string at once but cost a first request 800
 * instructions with the global scope and 1,200 with a scope function (callgrind, inclusive).
 * The sums and the read counted 230-360 fewer a first request with a scope function
 * (`scoped-first` 98,793 against 99,149, `early-first` 99,249 against 99,480: medians of five
 * servers each, run side by side).
 */
function storedKey(scope: string | undefined, key: string): string {
  const stored = scope === undefined ? `http:*:${key}` : `${scopePrefix(scope.length)}${scope}:${key}`;
  // Always `h` (never thrown): the read is what flattens it, and one whose result is used is kept.
  if (stored.charCodeAt(0) !== 0x68) throw new Error('storedKey');
  return stored;
}

/** `http:<length>:`, made once a length (a number converted at each call otherwise). */
function scopePrefix(length: number): string {
  return length < SCOPE_PREFIXES.length ? (SCOPE_PREFIXES[length] ??= `http:${length}:`) : `http:${length}:`;
}

/** The stored keys' prefixes, by their scope's length (a scope longer than this makes its own). */
const SCOPE_PREFIXES: (string | undefined)[] = new Array(256);

function isHead(method: string): boolean {
  // Node's parser gives the standard methods in capitals: no call to V8's runtime for them.
  return method === 'HEAD' || (method.length === 4 && upperCase(method) === 'HEAD');
}

/** RFC 9110 9.2.1: a request of these methods asks for nothing to change. */
const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

/** The last method {@link isSafe} was asked of, and its answer (see {@link HttpIdempotency.guards}). */
let safeSeen: string | undefined;
let safe = false;

function isSafe(method: string): boolean {
  if (method !== safeSeen) {
    safe = SAFE_METHODS.has(method) || SAFE_METHODS.has(upperCase(method));
    safeSeen = method;
  }
  return safe;
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
