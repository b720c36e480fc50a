import type { ServerResponse } from 'node:http';
import {
  BrokenCircuitError,
  DisposedError,
  durationOption,
  fnOption,
  HoldfastConfigError,
  HoldfastError,
  type Policy,
  parseOptions,
  TimeoutError,
} from '@holdfast/core';
import { z } from 'zod';
import { isRejection, type Rejection } from './errors.js';

/** Options of the load-shedding middleware, for Express and Fastify alike. */
export interface LoadSheddingOptions<Req> {
  /**
   * What admits a request: a bulkhead, a rate limiter, an adaptive limiter, a throttle, or a
   * `pipeline()` of them. A function picks one per request (per route, per tenant); returning
   * `undefined` lets the request through.
   */
  readonly policy: Policy | ((req: Req) => Policy | undefined);
  /**
   * Whose limit a request counts against (user, IP, API key), for rate limiters: `ipKey(req.ip)`
   * for a client's address. It may be async (a session looked up). @default the limiter's
   * `defaultKey`: one limit shared by every client
   */
  readonly key?: (req: Req) => string | undefined | PromiseLike<string | undefined>;
  /**
   * How many units a request takes from a rate limit (a costly search 5, a page 1); it may be
   * async, as `key`. A result that is not a whole number from 1 to what the limiter holds is a
   * bug: the request gets a `500` problem+json naming `cost`, and takes nothing (one not a whole
   * number from 1 to 1e9 whatever the policy holds, a bulkhead alone too). @default 1
   */
  readonly cost?: (req: Req) => number | PromiseLike<number>;
  /** `Retry-After` sent with a 503 whose policy does not know when to come back, ms. @default 1000 */
  readonly retryAfter?: number;
  /**
   * How long a request whose handler may still run keeps its place, at most, ms: one whose client
   * hung up (the place is held until the handler ends the response, to nobody), and one that a
   * timeout answered (Fastify's `handlerTimeout`: until the handler settles, or this long for a
   * handler that returns or awaits `reply`; Express's connect-timeout: the handler's end cannot
   * be seen, so this long). `0` frees the place at once.
   * @default 10000
   */
  readonly holdAfterHangUp?: number;
  /**
   * The `RateLimit` headers sent on each response a rate limiter decided (allowed or 429), after
   * draft-ietf-httpapi-ratelimit-headers, as express-rate-limit's `standardHeaders`: `'draft-8'`
   * (`RateLimit-Policy: "100-in-60s";q=100;w=60` and `RateLimit: "100-in-60s";r=99;t=1`, one
   * item per limit, the grammar of drafts 8 to 10), `'draft-7'` (`RateLimit: limit=100,
   * remaining=99, reset=1`), `'draft-6'` (`RateLimit-Limit`, `-Remaining`, `-Reset`) or `false`.
   * Only a limit counted under the request's own `key` is shown (never the key itself); drafts 6
   * and 7 show the one closest to refusing. Two middlewares on one request: the first that asked
   * for a draft picks it, and every limit the request met is shown in it. @default 'draft-8'
   */
  readonly standardHeaders?: 'draft-6' | 'draft-7' | 'draft-8' | false;
  /**
   * Also `X-RateLimit-Limit` (what the key holds: `burst`, or `limit`), `X-RateLimit-Remaining`
   * (what it may send now) and `X-RateLimit-Reset` (the Unix time, in seconds, by which it holds
   * Limit again), as express-rate-limit's `legacyHeaders`: the limit closest to refusing. @default false
   */
  readonly legacyHeaders?: boolean;
}

const schema = z.strictObject({
  policy: z.custom<Policy | ((req: never) => Policy | undefined)>(
    (v) => typeof v === 'function' || typeof (v as Policy | null)?.execute === 'function',
    { error: 'must be a Policy (a bulkhead, a limiter, a pipeline) or a function of the request that picks one' },
  ),
  key: fnOption<(req: never) => unknown>().optional(),
  cost: fnOption<(req: never) => unknown>().optional(),
  retryAfter: durationOption.default(1000),
  holdAfterHangUp: durationOption.default(10_000),
  standardHeaders: z.literal(['draft-6', 'draft-7', 'draft-8', false]).default('draft-8'),
  legacyHeaders: z.boolean().default(false),
});

/**
 * Whether a request's handler may still run once its response has ended (a timeout answered it):
 * `false` or `undefined`, no; `true`, yes, and its end cannot be seen; a promise, until it settles.
 */
export type StillRunning<Req> = (req: Req, res: ServerResponse) => PromiseLike<unknown> | boolean | undefined;

/** A shedding decision, made once per request. */
export class Shedder<Req> {
  readonly #pick: (req: Req) => Policy | undefined;
  readonly #key: ((req: Req) => unknown) | undefined;
  readonly #retryAfter: number;
  readonly #holdAfterHangUp: number;
  readonly #running: StillRunning<Req> | undefined;
  readonly #headers: 'draft-6' | 'draft-7' | 'draft-8' | false;
  readonly #legacy: boolean;
  readonly #cost: ((req: Req) => unknown) | undefined;
  readonly #owner: string;

  constructor(owner: string, options: LoadSheddingOptions<Req>, running?: StillRunning<Req>) {
    this.#owner = owner;
    this.#running = running;
    const o = parseOptions(owner, schema, options);
    this.#headers = o.standardHeaders;
    this.#legacy = o.legacyHeaders;
    this.#cost = o.cost as ((req: Req) => unknown) | undefined;
    const p = o.policy;
    this.#pick = typeof p === 'function' ? (p as (req: Req) => Policy | undefined) : () => p;
    this.#key = o.key as ((req: Req) => unknown) | undefined;
    this.#retryAfter = o.retryAfter;
    this.#holdAfterHangUp = o.holdAfterHangUp;
  }

  /**
   * Admits `req` and keeps its place for as long as its response `res` is being made: resolves
   * to `true` when the request may go on, else to the {@link Shed} response that ends it (sent to
   * nobody if its client already left: the handler must not run). The place is freed when the
   * handler ends the response (with its status, whether the client has read it yet or not), when
   * the client leaves while queued, or, when the client leaves while the handler runs, once the
   * handler ends the response or `holdAfterHangUp` ran out: the handler still runs, and a client
   * that hangs up must not make room for more of them than the policy allows. So with a timeout
   * that answers while the handler runs: the place is held until the handler settles, or for
   * `holdAfterHangUp` when that cannot be seen. A request whose response was sent while it
   * waited (a timeout answered it in the queue) frees its place as it is admitted, and its
   * handler must not run.
   */
  async hold(req: Req, res: ServerResponse): Promise<true | Shed> {
    const gone = new AbortController();
    let release: Release | undefined;
    // The handler ended the response: the work is done and the place is free, read or not (a
    // client that never reads must not keep a place): seen at its end() (see emitEnded).
    emitEnded(res);
    const ended = () => {
      res.removeListener('close', left);
      // Answered while it waits (a timeout): it leaves the queue; its handler must not run.
      if (release === undefined) return gone.abort();
      const running = this.#running?.(req, res);
      if (!running && (res.statusCode === 429 || refused.has(res))) {
        // One client told to slow down (a rate limit further in, or the app's own) says nothing
        // of the service: no sample, no refusal. As a failure, one client's 429s shrank an
        // adaptive limit to its minimum and made a throttle shed everyone with 503. Nor does a
        // request a policy further in shed (a route's own bulkhead): it never reached its handler.
        gone.abort();
        return release();
      }
      if (!running) return release(res.statusCode);
      const free = release;
      const status = res.statusCode;
      this.#holdWhile(running, () => free(status));
    };
    const left = () => {
      res.removeListener(ENDED, ended);
      const free = release;
      // A timeout that found the response under way (its headers sent) destroys it (Fastify's
      // handlerTimeout): as for one it answered, the place is held while the handler may run,
      // and the held call ends with the timeout's 503 (not aborted: an adaptive limiter must
      // learn from it).
      const running = free === undefined ? undefined : this.#running?.(req, res);
      if (free !== undefined && running) return this.#holdWhile(running, () => free(503));
      gone.abort();
      if (free === undefined) return;
      if (res.writableEnded) return free();
      // The handler ends the response after its client left: its end() still says so.
      this.#holdOn(free, (done) => {
        res.once(ENDED, done);
        return () => res.removeListener(ENDED, done);
      });
    };
    res.once(ENDED, ended);
    res.once('close', left);
    const outcome = await this.admit(req, res, gone.signal);
    if (typeof outcome !== 'function') {
      refused.add(res);
      return outcome;
    }
    // Admitted as its client left, or answered meanwhile: its handler must not run (there is no
    // place held for it).
    if (gone.signal.aborted || res.writableEnded) {
      outcome();
      return goneShed;
    }
    release = outcome;
    return true;
  }

  /** A timeout answered while the handler may run: frees the place once `running` settles (`true`: cannot be seen). */
  #holdWhile(running: PromiseLike<unknown> | true, release: () => void): void {
    this.#holdOn(release, running === true ? undefined : (done) => void running.then(done, done));
  }

  /**
   * The handler may still run: frees the place once `watch` calls its `done` (the handler ended),
   * or `holdAfterHangUp` later at most. `watch` may return what stops watching.
   */
  #holdOn(release: () => void, watch: ((done: () => void) => (() => void) | undefined) | undefined): void {
    if (this.#holdAfterHangUp === 0) {
      release();
      return;
    }
    let freed = false;
    let stop: (() => void) | undefined;
    const done = () => {
      if (freed) return;
      freed = true;
      clearTimeout(timer);
      stop?.();
      release();
    };
    const timer = setTimeout(done, this.#holdAfterHangUp);
    timer.unref();
    stop = watch?.(done);
  }

  /**
   * Admits `req` through its policy: resolves to the function that frees its place (call it with
   * the response's status when the response is over), or to a {@link Shed} response when the
   * policy refused it (or was disposed). Another error (a bug in `key`, a policy failing) rejects.
   * A status of 5xx ends the held call with a failure (an `E_HTTP_STATUS` error carrying
   * `status`), so that an adaptive throttle or limiter sees the service refusing; any other
   * status ends it with success (a 429 is aborted before it gets here: see `hold`). A request that already holds a place in the policy under the
   * same key (the middleware mounted twice on its path) takes no second one.
   */
  admit(req: Req, res: ServerResponse, signal: AbortSignal): Promise<Release | Shed> {
    const policy = this.#pick(req);
    if (policy === undefined) return Promise.resolve(noop);
    // A bug in the policy function (an async one, a lookup that found nothing): said so, where it
    // was a TypeError, "policy.execute is not a function".
    if (typeof (policy as Policy | null)?.execute !== 'function') {
      const issue = { path: 'policy', message: 'must return a Policy or undefined', value: policy };
      return Promise.reject(new HoldfastConfigError(this.#owner, [issue]));
    }
    const cost = this.#cost?.(req);
    const key = this.#key?.(req);
    // An async key (a session looked up) or cost: its String() was every request's key, and its
    // rejection went unhandled. A client that leaves while it is looked up left while queued:
    // nobody to answer, and nothing taken from the limit when the key comes (before, a token).
    if (thenable(key) || thenable(cost)) {
      return new Promise((resolve, reject) => {
        const left = () => resolve(goneShed);
        signal.addEventListener('abort', left, { once: true });
        Promise.all([key, cost]).then(
          ([k, c]) => {
            signal.removeEventListener('abort', left);
            if (!signal.aborted) this.#admit(policy, keyString(k), c, res, signal).then(resolve, reject);
          },
          (error: unknown) => {
            signal.removeEventListener('abort', left);
            reject(error);
          },
        );
      });
    }
    return this.#admit(policy, keyString(key), cost, res, signal);
  }

  #admit(
    policy: Policy,
    key: string | undefined,
    cost: unknown,
    res: ServerResponse,
    signal: AbortSignal,
  ): Promise<Release | Shed> {
    // Not a whole number from 1 to 1e9 (NaN, a string, 0, 1.5): no limiter could take it, so it is
    // refused whatever the policy holds (before, a bulkhead alone let 1.5 through). Past what the
    // request's limiter holds, that limiter refuses it.
    if (this.#cost !== undefined && !(Number.isInteger(cost) && (cost as number) >= 1 && (cost as number) <= 1e9)) {
      return Promise.resolve(badCost);
    }
    // An empty key (an empty header) names nobody: it counted under the limiter's defaultKey, '',
    // with every request that gave none, and was told what they had spent.
    if (key === '') return Promise.resolve(badKey);
    // Met again on its way (`app.use(shed)` and `app.use('/api', shed)`, the plugin on a parent
    // and a child): a second place would halve a limit, or shed every request a bulkhead of one sees.
    const places = held.get(res);
    for (let i = 0; places !== undefined && i < places.length; i += 2) {
      if (places[i] === policy && places[i + 1] === key) return Promise.resolve(noop);
    }
    // What the limits took, given back if the request is not admitted after all (a later limit,
    // a bulkhead or a timeout refused it, or a cost a later limit cannot take): it never ran.
    let taken: (() => void)[] | undefined = [];
    // The request, once admitted: run again (a retry() before the limits after its 5xx, a hedge()),
    // it is the same request and settles with it. Before, each later run took a place (a
    // bulkhead's slot) that nothing gave back: two 500s filled a bulkhead of 2 for good.
    let admitted: Promise<void> | undefined;
    return new Promise((resolve, reject) => {
      policy
        .execute(
          () =>
            (admitted ??= new Promise<void>((done, fail) => {
              taken = undefined;
              const now = held.get(res);
              if (now === undefined) held.set(res, [policy, key]);
              else now.push(policy, key);
              resolve((status) => {
                if (status !== undefined && status >= 500) fail(statusError(status));
                else done();
              });
            })),
          {
            signal,
            key,
            cost,
            // Always heard: a limit that a middleware without headers decided on is shown by another that has them.
            [DECIDED]: (limiter: object, quota: number, window: number, d: Decision, steady?: number) =>
              this.#tell(res, limiter, [quota, window, d, steady]),
            [TAKEN]: (undo: () => void) => taken?.push(undo),
          } as { signal: AbortSignal },
        )
        .then(
          () => {
            // Settled without admitting the request (a fallback, or a breaker's, served a value in
            // place of a refusal): it never ran. Before, nothing answered it: it hung.
            if (taken === undefined) return;
            giveBack(taken);
            resolve(signal.aborted ? goneShed : this.#shed(notAdmitted));
          },
          (thrown: unknown) => {
            giveBack(taken);
            const error = refusalIn(thrown);
            // The client went away while queued: nobody to answer, and nothing went wrong.
            if (signal.aborted) resolve(goneShed);
            else if (isRejection(error)) resolve(this.#shed(error));
            // A cost the limiter can never take (more than it holds, not whole): the cost option's bug.
            else if (error instanceof HoldfastConfigError && error.issues[0]?.path === 'cost') resolve(badCost);
            // Not admitted: shutting down (disposed), no place within a pipeline's timeout, or a
            // circuit open in it. The client should come back later; nothing went wrong here.
            else if (error instanceof DisposedError || error instanceof TimeoutError) {
              resolve(this.#shed({ status: 503, retryAfter: undefined, code: error.code }));
            } else if (error instanceof BrokenCircuitError) {
              const retryAfter = error.retryAt === undefined ? undefined : error.retryAt - Date.now();
              resolve(this.#shed({ status: 503, retryAfter, code: error.code }));
            } else reject(thrown);
          },
        );
    });
  }

  /**
   * A rate limiter decided on the request (under its own key): its `RateLimit` headers say so, with
   * the others'. Every limit the request met is shown, in the draft of the first middleware that
   * asked for one (a later one with another draft follows it: two drafts were a mix no client
   * could read), and in X-RateLimit-* if any asked for them.
   */
  #tell(res: ServerResponse, limiter: object, told: Told): void {
    let limits = decided.get(res);
    if (limits === undefined) decided.set(res, (limits = new Map()));
    // A limiter's latest word stands: it took again (met in two middlewares' policies), or gave
    // the request's units back (a later policy refused it) and says what its key holds now.
    limits.set(limiter, told);
    if (this.#legacy) legacy.add(res);
    let draft = drafts.get(res);
    if (draft === undefined && this.#headers) drafts.set(res, (draft = this.#headers));
    // Nobody asked for headers (yet): the decision is kept for one that does, and nothing else is done.
    // A response already under way (a timeout answered it), or a stream gone: nothing to tell.
    if ((draft === undefined && !legacy.has(res)) || res.headersSent || res.destroyed) return;
    // By name: two limits of one quota and window (a token bucket and a sliding window, per user)
    // were two items of one name, and a client reading RateLimit by name got either. The closer stands.
    const named = new Map<string, Limit>();
    let most = Number.POSITIVE_INFINITY;
    const each = [...limits.values()].map(([quota, window, d, steady]) => {
      const l: Limit = [...shown(quota, window, d, steady), quota];
      most = Math.min(most, quota);
      const name = `"${l[0]}-in-${l[1]}s"`;
      const other = named.get(name);
      named.set(name, other === undefined ? l : closer(other, l));
      return l;
    });
    const all = [...named];
    const set = (name: string, f: (l: [string, Limit]) => string) => res.setHeader(name, all.map(f).join(', '));
    const [q, , r, t] = all.map((e) => e[1]).reduce(closer);
    // Asked for by any middleware the request met: each limit's decision updates them. As
    // express-rate-limit's, for the request's limits together: Limit what a fresh key may send at
    // once (the least any holds: burst, or limit), Remaining what it may send now (the least left),
    // Reset when it holds Limit again (when each limit with less left is whole). Before, the rate
    // shown as q (10 a second with a burst of 1 said 10, and 9 of 10 sent at once were refused),
    // then the closest limit alone (10 a second beside 5 per 5 s said Limit 10, and 10 sent at
    // Reset had most refused by the other).
    if (legacy.has(res)) {
      let back = 0;
      for (const l of each) if (l[2] < most) back = Math.max(back, l[3]);
      res.setHeader('x-ratelimit-limit', int(most));
      res.setHeader('x-ratelimit-remaining', r);
      res.setHeader('x-ratelimit-reset', int(Math.ceil(Date.now() / 1000) + back));
    }
    if (draft === undefined) return;
    if (draft === 'draft-8') {
      set('ratelimit-policy', ([n, [q, w]]) => `${n};q=${q};w=${w}`);
      set('ratelimit', ([n, [, , r, t]]) => `${n};r=${r};t=${t}`);
      return;
    }
    set('ratelimit-policy', ([, [q, w]]) => `${q};w=${w}`);
    if (draft === 'draft-7') res.setHeader('ratelimit', `limit=${q}, remaining=${r}, reset=${t}`);
    else {
      // Not chained: an HTTP/2 response's setHeader returns undefined, not the response.
      res.setHeader('ratelimit-limit', q);
      res.setHeader('ratelimit-remaining', r);
      res.setHeader('ratelimit-reset', t);
    }
  }

  #shed(error: Rejection & { code: string }): Shed {
    const wait = error.retryAfter === undefined || Number.isNaN(error.retryAfter) ? this.#retryAfter : error.retryAfter;
    const limited = error.status === 429;
    return problem(
      error.status,
      limited ? 'rate-limited' : 'overloaded',
      limited ? 'Too many requests' : 'Service overloaded',
      limited
        ? 'The rate limit for this client was reached. Retry after the Retry-After delay.'
        : 'The service is at capacity and shed this request. Retry after the Retry-After delay.',
      error.code,
      // Whole seconds (delay-seconds is digits only), at least 1; capped at 2^31 as RFC 9110 caps delta-seconds.
      String(Math.min(2 ** 31, Math.max(1, Math.ceil(wait / 1000)))),
    );
  }
}

/** The response to a shed request. */
export interface Shed {
  /** 429 for a rate limit, 503 for overload; 400 for an empty key, 500 for a bad cost. */
  readonly status: 400 | 429 | 500 | 503;
  /** `content-type: application/problem+json` and, on a 429 or 503, `retry-after` in seconds. */
  readonly headers: {
    /** Always `application/problem+json`. */
    readonly 'content-type': string;
    /** Whole seconds, from 1 to 2^31. */
    readonly 'retry-after'?: string;
  };
  /** The problem+json body (RFC 9457). */
  readonly body: string;
}

/** Frees a request's place; `status` is the response's, when it was sent in full. */
export type Release = (status?: number) => void;

function noop(): void {}

/**
 * What each response's request met, shared by every copy of this module a process loads (the ESM
 * and the CommonJS build, each mounted as a middleware): with a record of its own per copy, a
 * request took a place in a policy in each copy it met (a bulkhead of 1 refused every request,
 * a token bucket counted each twice), and a copy that found end() already wrapped by the other
 * never heard the response end.
 */
interface State {
  /** Responses whose end() emits {@link ENDED}. */
  readonly endSeen: WeakSet<ServerResponse>;
  /** What each limiter a response's request was counted against told, by limiter. */
  readonly decided: WeakMap<ServerResponse, Map<object, Told>>;
  /** The draft each response's headers are written in: the first a middleware that decided on it asked for. */
  readonly drafts: WeakMap<ServerResponse, 'draft-6' | 'draft-7' | 'draft-8'>;
  /** Responses a shedder with `legacyHeaders` decided on. */
  readonly legacy: WeakSet<ServerResponse>;
  /** Responses a shedder answered: their requests never reached a handler. */
  readonly refused: WeakSet<ServerResponse>;
  /** The places each response's request holds: policy, key, policy, key... */
  readonly held: WeakMap<ServerResponse, (Policy | string | undefined)[]>;
}
const state = ((globalThis as Record<symbol, unknown>)[Symbol.for('@holdfast/limit/http@0')] ??= {
  endSeen: new WeakSet(),
  decided: new WeakMap(),
  drafts: new WeakMap(),
  legacy: new WeakSet(),
  refused: new WeakSet(),
  held: new WeakMap(),
} satisfies State) as State;
const { endSeen, decided, drafts, legacy, refused, held } = state;

/** Emitted on a response as its end() returns: the handler is done with it (one symbol for every copy). */
const ENDED = Symbol.for('@holdfast/limit/ended@0');

/**
 * Makes `res.end()` emit {@link ENDED}: the handler's end, whether the client reads or not. A
 * response's own events come later, at a time the client chooses: an HTTP/1 response pipelined
 * behind one its client never reads emits 'prefinish' only once that one is sent (5 pipelined
 * requests kept 5 places of a bulkhead for as long as the connection stayed open); an HTTP/2
 * one (Fastify's `http2`) emits no 'prefinish', and 'finish' when its stream closes, so once a
 * client that never reads (its window at 0) let it close, and also when the client resets the
 * stream while the handler runs (read as the handler's end, it freed a running handler's place).
 */
function emitEnded(res: ServerResponse): void {
  if (endSeen.has(res)) return;
  endSeen.add(res);
  const end = res.end;
  res.end = function (this: ServerResponse, ...args: unknown[]) {
    const out = Reflect.apply(end, this, args) as ServerResponse;
    this.emit(ENDED);
    return out;
  } as ServerResponse['end'];
}

/** Where a rate limiter tells the middleware its decision on a request (see rate.ts). */
const DECIDED = Symbol.for('holdfast.limit.decided');

/** Where a rate limiter hands the middleware how to give back what it took (see rate.ts). */
const TAKEN = Symbol.for('holdfast.limit.taken');

const thenable = (v: unknown) => typeof (v as PromiseLike<unknown> | undefined)?.then === 'function';

/** A rate limiter's decision on a request: what its key has left, and when it is whole again (ms). */
type Decision = { remaining: number; reset: number };

/** What a rate limiter tells of a request: its quota (units, over ms) and its decision (see rate.ts). */
type Told = [quota: number, window: number, decision: Decision, steady?: number];

/** One limit as shown: q, w (s), r, t (s). */
export type Shown = [q: number, w: number, r: number, t: number];

/** One limit as shown, and the units its key holds (X-RateLimit-Limit). */
type Limit = [...Shown, quota: number];

/**
 * One limit as the headers show it, from its quota (the units a key holds; `steady` of them come
 * back each `window` ms when it is kept at its limit) and a decision: q and w (whole seconds, at
 * least 1) the rate a client can keep to, r what goes now, t the seconds until the quota is back.
 * Not the quota over its window: 5 per 100 ms was "5-in-1s", a tenth of the rate (it is
 * "50-in-1s"), and a sliding window of 2 per 10 s, "2-in-10s", refused every other request of a
 * client that kept to it (it is "1-in-10s").
 */
export function shown(quota: number, window: number, d: { remaining: number; reset: number }, steady = quota): Shown {
  const rate = (steady * 1000) / window;
  // Whole seconds, rounded up, long enough for a unit (a sliding window of 1 takes two windows),
  // and for q, rounded down, to lose at most a tenth of the rate (1.99 a second is "9-in-5s", not "1-in-1s").
  const least = Math.max(1, Math.ceil(window / 1000 - 1e-9), Math.ceil(1 / rate - 1e-9));
  let w = least;
  while ((rate * w) % 1 > 0.1 * rate * w + 1e-9) w += least;
  return [int(rate * w + 1e-9), int(w), int(d.remaining), int(Math.ceil(d.reset / 1000))];
}

/**
 * `n` rounded down to an Integer a structured field holds (RFC 8941: at most 15 digits), not
 * negative. The options keep q, w and t within it (interval from 1 ms, a limit back whole within
 * 1e15 ms); a decision from Redis says what the server's clock and key say (stepped back, a key
 * another limiter wrote): never `1e+21` or `Infinity` in a header.
 */
const int = (n: number) => (n > 0 ? Math.min(999_999_999_999_999, Math.floor(n)) : 0);

/** The limit closest to refusing: the fewest left, then the longest to wait. */
const closer = (a: Limit, b: Limit): Limit => (b[2] < a[2] || (b[2] === a[2] && b[3] > a[3]) ? b : a);

/**
 * What `key(req)` returned, as the string a limiter counts it under. Not a string (an array from a
 * repeated query parameter, a number, an object): its `String()`, so such requests share a limit
 * rather than each getting a new one or failing with a 500.
 */
function keyString(key: unknown): string | undefined {
  if (typeof key === 'string' || key === undefined || key === null) return key ?? undefined;
  try {
    return String(key);
  } catch {
    return Object.prototype.toString.call(key);
  }
}

/** What the held call fails with when the response says the service refused (5xx). */
function statusError(status: number): HoldfastError & { status: number } {
  return Object.assign(new HoldfastError('E_HTTP_STATUS', `the response was ${status}`), { status });
}

/** An application/problem+json response (RFC 9457) of type `urn:holdfast:problem:<type>`. */
function problem(
  status: Shed['status'],
  type: string,
  title: string,
  detail: string,
  code: string,
  retryAfter?: string,
): Shed {
  const body = JSON.stringify({ type: `urn:holdfast:problem:${type}`, title, status, detail, code });
  const headers = { 'content-type': 'application/problem+json' };
  return { status, headers: retryAfter === undefined ? headers : { ...headers, 'retry-after': retryAfter }, body };
}

/**
 * The refusal behind a policy's error: a `retry()` before the limits that gave up on them wraps
 * the last refusal (`E_RETRY_EXHAUSTED`, its `cause`). Before, that was a 500 for every request
 * the limits still refused when the retry gave up (a rate limit's wait past its `maxDelay`: at once).
 */
function refusalIn(error: unknown): unknown {
  let e = error;
  for (let depth = 0; depth < 4 && e instanceof HoldfastError; depth++) {
    if (isRejection(e) || e instanceof DisposedError || e instanceof TimeoutError || e instanceof BrokenCircuitError) {
      return e;
    }
    e = e.cause;
  }
  return error;
}

/** Gives back what the limits took for a request that was not admitted: it never ran. */
function giveBack(taken: (() => void)[] | undefined): void {
  for (const undo of taken ?? []) {
    try {
      undo();
    } catch {}
  }
}

/** A policy that settled without admitting the request (a fallback served a value in its place). */
const notAdmitted = { status: 503, retryAfter: undefined, code: 'E_NOT_ADMITTED' } as const;

/** What a request whose key is empty gets. */
const badKey = problem(
  400,
  'bad-key',
  'Bad rate limit key',
  'The key option gave this request an empty key.',
  'E_BAD_KEY',
);

/** What a request whose cost no limiter can take gets: a bug in the cost option. */
const badCost = problem(
  500,
  'bad-cost',
  'Bad rate limit cost',
  'The cost option gave this request a cost that is not a whole number from 1 to what the limit holds.',
  'E_CONFIG',
);

/** What a request whose client hung up while it waited gets (the socket is closed: nobody reads it). */
const goneShed: Shed = {
  status: 503,
  headers: { 'content-type': 'application/problem+json', 'retry-after': '1' },
  body: '{"type":"urn:holdfast:problem:overloaded","title":"Client closed the request","status":503}',
};
