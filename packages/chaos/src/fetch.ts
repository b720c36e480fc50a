import {
  type Bus,
  busOption,
  durationOption,
  fnOption,
  bus as globalBus,
  HoldfastConfigError,
  nameOption,
  parseOptions,
  shieldBus,
  warnOnce,
} from '@holdfast/core';
import { z } from 'zod';
import { randomOption } from './options.js';
import { flagOn, onSwitchOff, state } from './switch.js';

const faultCommon = {
  /** The share of matching requests (0 to 1) that get this fault. @default 1 */
  rate: z.number().min(0).max(1).default(1),
  /** At most this many requests get it, then it stops. @default no limit */
  times: z.number().int().positive().optional(),
  /**
   * Only requests this returns true for (by URL, method, header...), answered at once. One that
   * throws or returns a promise reads as false, told once as a process warning
   * (HOLDFAST_PREDICATE_ERROR). @default every request
   */
  match: fnOption<(request: Request) => boolean>().optional(),
};

/** Validates one fault of `faultyFetch()`; {@link FetchFault} is inferred from it. */
export const fetchFaultSchema = z.discriminatedUnion('type', [
  /** Answers with this status instead of calling the server, e.g. a 503 with `Retry-After`. */
  z
    .strictObject({
      type: z.literal('status'),
      status: z.number().int().min(200).max(599),
      // Checked here as a Response would: else every request it picked failed with undici's message.
      headers: z
        .record(z.string(), z.string())
        .default({})
        .superRefine((headers, ctx) => {
          for (const [name, value] of Object.entries(headers)) {
            try {
              new Headers([[name, value]]);
            } catch {
              ctx.addIssue({ code: 'custom', path: [name], message: 'is no valid HTTP header' });
            }
          }
        }),
      body: z.string().default(''),
      ...faultCommon,
    })
    .refine((f) => f.body === '' || !noBody(f.status), {
      error: 'a 204, 205 or 304 response has no body',
      path: ['body'],
    }),
  /** Waits before the request goes out: ms, or `{ min, max }` drawn uniformly. Aborts end the wait. */
  z.strictObject({
    type: z.literal('delay'),
    delay: z.union([
      durationOption,
      z
        .strictObject({ min: durationOption, max: durationOption })
        .refine((r) => r.max >= r.min, { error: 'max must be >= min' }),
    ]),
    ...faultCommon,
  }),
  /**
   * A connection reset, as undici reports it: `TypeError('fetch failed')` with an ECONNRESET
   * `cause` (phase `request`), or a body that breaks off with `TypeError('terminated')` after
   * `after` bytes (phase `body`). @default phase: 'request'
   */
  z.strictObject({
    type: z.literal('reset'),
    phase: z.enum(['request', 'body']).default('request'),
    after: z.number().int().nonnegative().default(0),
    ...faultCommon,
  }),
  /** A refused connection: `TypeError('fetch failed')` with an ECONNREFUSED `cause`. Safe to retry. */
  z.strictObject({ type: z.literal('refuse'), ...faultCommon }),
  /** A server that never answers: the request settles only when its signal aborts. */
  z.strictObject({ type: z.literal('hang'), ...faultCommon }),
  /** The body trickles in: `chunkSize` bytes every `delay` ms. */
  z.strictObject({
    type: z.literal('slowBody'),
    chunkSize: z.number().int().positive().default(64),
    delay: durationOption.default(50),
    ...faultCommon,
  }),
]);

/** One HTTP-level fault of {@link faultyFetch}. See {@link fetchFaultSchema} for each type. */
export type FetchFault = z.input<typeof fetchFaultSchema>;

/** Validates the options of {@link faultyFetch}. */
export const faultyFetchOptionsSchema = z.strictObject({
  /** The faults, tried in order on each request: delays and slow bodies add up, the first other one picked decides. */
  faults: z.array(fetchFaultSchema).min(1),
  /** The fetch underneath, for requests no fault answers. @default globalThis.fetch */
  fetch: fnOption<typeof globalThis.fetch>().optional(),
  /** Whether it injects: a boolean, or a function read per request. Off unless enabled. @default false */
  enabled: z.union([z.boolean(), fnOption<() => boolean>()]).default(false),
  /** Draws each fault's `rate`; pass `seededRandom(seed)` for repeatable runs. @default Math.random */
  random: randomOption.optional(),
  /** Shown as `source` on its `chaos.inject` events. @default 'faultyFetch' */
  name: nameOption.default('faultyFetch'),
  /** @default the global bus */
  bus: busOption.optional(),
});

/** Options of {@link faultyFetch}. */
export type FaultyFetchOptions = z.input<typeof faultyFetchOptionsSchema>;

/** A fetch-compatible function with faults in it; `injected` counts the requests it touched. */
export type FaultyFetch = typeof globalThis.fetch & { readonly injected: number };

type Parsed = z.output<typeof fetchFaultSchema>;

/**
 * A fetch that injects HTTP-level faults without a server to misbehave: statuses, delays,
 * resets, refusals, hangs and slow bodies, each with a rate. Pass it as `resilientFetch`'s
 * `fetch` option (or use it anywhere a fetch goes). Off unless `enabled`; `chaosSwitch.off()`
 * and `HOLDFAST_CHAOS=off` turn it off too.
 *
 * @example
 * const api = resilientFetch({
 *   baseUrls: ['https://api.example.com'],
 *   fetch: faultyFetch({ enabled: true, faults: [{ type: 'status', status: 503, rate: 0.1 }] }),
 * });
 */
export function faultyFetch(options: FaultyFetchOptions): FaultyFetch {
  const parsed = parse(options);
  const inner = parsed.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const random = parsed.random ?? Math.random;
  const bus = shieldBus(parsed.bus ?? globalBus, parsed.name);
  const used = parsed.faults.map(() => 0);
  const enabled = parsed.enabled;
  let injected = 0;

  const report = (detail: string) => {
    if (bus.wants('chaos.inject')) report0(bus, parsed.name, detail);
  };

  const faulty = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    if (state.off || enabled === false || (enabled !== true && !flagOn(enabled, parsed.name, faulty))) {
      return inner(input, init);
    }
    // From here on the request goes out as this Request: building it took the body of a
    // Request passed in (sending that `input` again fails: its body is used).
    const request = new Request(input, init);
    // What a Request does not keep (undici's `dispatcher`) goes on with it; not its body (in it, and
    // used) nor its headers: again, they would replace its own, the Content-Type fetch gave its body
    // with them. The rest of RequestInit (`signal`, `mode`…) it holds as given: passed again, the same.
    const { body: _body, headers: _headers, method: _method, ...rest } = init ?? {};
    const signal = init?.signal ?? (input instanceof Request ? input.signal : undefined) ?? undefined;
    // As fetch: aborted already, it never goes out; no fault answers it, nor spends a `times` on it.
    if (signal?.aborted) throw signal.reason;
    let slow: Extract<Parsed, { type: 'slowBody' }> | undefined;
    let bodyReset: Extract<Parsed, { type: 'reset' }> | undefined;
    let touched = false;
    let answer: Response | undefined;
    for (const [i, fault] of parsed.faults.entries()) {
      if (state.off) return inner(request, rest); // the kill switch went off during a delay
      if (fault.times !== undefined && (used[i] ?? 0) >= fault.times) continue;
      if (fault.match !== undefined && !matches(fault.match, request, parsed.name)) continue;
      if (random() >= fault.rate) continue;
      used[i] = (used[i] ?? 0) + 1;
      if (!touched) injected++;
      touched = true;
      if (fault.type === 'delay') {
        const wait =
          typeof fault.delay === 'number'
            ? fault.delay
            : fault.delay.min + random() * (fault.delay.max - fault.delay.min);
        report(`+${Math.round(wait)} ms`);
        await pause(wait, signal);
        continue;
      }
      if (fault.type === 'slowBody') {
        slow = fault;
        report('slow body');
        continue;
      }
      if (fault.type === 'reset' && fault.phase === 'body') {
        bodyReset = fault;
        report('ECONNRESET (body)');
        continue;
      }
      if (fault.type === 'status') {
        report(String(fault.status));
        answer = answeredBy(
          new Response(noBody(fault.status) ? null : fault.body, { status: fault.status, headers: fault.headers }),
          request.url,
        );
        break;
      }
      if (fault.type === 'hang') {
        report('hang');
        await pause(undefined, signal);
        return inner(request, rest); // only the kill switch ends a hang but an abort
      }
      const code = fault.type === 'refuse' ? 'ECONNREFUSED' : 'ECONNRESET';
      report(code);
      throw fetchFailed(code, request.url);
    }
    const response = answer ?? (await inner(request, rest));
    if (slow === undefined && bodyReset === undefined) return response;
    return alterBody(response, slow, bodyReset, signal);
  };
  Object.defineProperty(faulty, 'injected', { get: () => injected, enumerable: true });
  return faulty as FaultyFetch;
}

/** The options parsed; a header's issue names the header, not its value (which may be a token). */
function parse(options: unknown): z.output<typeof faultyFetchOptionsSchema> {
  try {
    return parseOptions('faultyFetch', faultyFetchOptionsSchema, options);
  } catch (error) {
    if (!(error instanceof HoldfastConfigError)) throw error;
    throw new HoldfastConfigError(
      'faultyFetch',
      error.issues.map((issue) =>
        /\.headers\./.test(issue.path) ? { path: issue.path, message: issue.message } : issue,
      ),
    );
  }
}

function report0(bus: Bus, source: string, detail: string): void {
  bus.emit({ type: 'chaos.inject', source, time: Date.now(), kind: 'fetch', detail });
}

/** What undici throws for a connection that failed: `TypeError('fetch failed')` with a system error as `cause`. */
function fetchFailed(code: 'ECONNRESET' | 'ECONNREFUSED', url: string): TypeError {
  const cause = Object.assign(
    new Error(code === 'ECONNRESET' ? 'read ECONNRESET' : `connect ECONNREFUSED ${new URL(url).host}`),
    code === 'ECONNRESET'
      ? { code, errno: -104, syscall: 'read' }
      : { code, errno: -111, syscall: 'connect', address: new URL(url).hostname },
  );
  return new TypeError('fetch failed', { cause });
}

/** `match` functions whose throw was told: once per function, however many faults share it. */
const toldMatches = new WeakSet<object>();

/** A `match` that throws reads as no match (chaos never breaks a request), told once per function. */
function matches(match: (request: Request) => boolean, request: Request, name: string): boolean {
  try {
    const answer = match(request) as unknown as PromiseLike<unknown> | null;
    if (typeof answer?.then !== 'function') return Boolean(answer);
    // A promise (an async match) is no answer, and truthy: every request would get the fault.
    answer.then(undefined, () => {}); // its rejection is no unhandled one
    throw new TypeError('it returned a promise, not true or false');
  } catch (error) {
    const text = `${name}: a fault's match threw (reported once per function); the fault was not applied`;
    warnOnce(toldMatches, match, 'HOLDFAST_PREDICATE_ERROR', text, error);
    return false;
  }
}

/**
 * Waits `ms` (forever without it: a hang, as a blackholed server; no timer holds the process),
 * until `signal` aborts (rejects with its reason) or the kill switch goes off (resolves).
 */
function pause(ms: number | undefined, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = ms === undefined ? undefined : setTimeout(() => end(resolve), ms);
    const unwatch = onSwitchOff(() => end(resolve));
    const abort = () => end(() => reject(signal?.reason));
    signal?.addEventListener('abort', abort, { once: true });
    function end(settle: () => void): void {
      clearTimeout(timer);
      unwatch();
      signal?.removeEventListener('abort', abort);
      settle();
    }
  });
}

/**
 * The same response, its body trickling in and/or breaking off part way. As fetch's own, it fails
 * with the reason of the request's `signal` once that aborts; cancelled, it ends its wait at once.
 */
function alterBody(
  response: Response,
  slow: { chunkSize: number; delay: number } | undefined,
  reset: { after: number } | undefined,
  signal: AbortSignal | undefined,
): Response {
  const source = response.body;
  if (source === null) return response;
  const reader = source.getReader();
  // Ends the piece delay under way: the body was cancelled, or the request aborted.
  const stop = new AbortController();
  let pending = new Uint8Array(0);
  let sent = 0;
  let abort: (() => void) | undefined;
  const done = (reason?: unknown) => {
    signal?.removeEventListener('abort', abort as () => void);
    stop.abort(reason);
  };
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      abort = () => {
        done(signal?.reason);
        controller.error(signal?.reason);
        void reader.cancel(signal?.reason).catch(() => {});
      };
      if (signal?.aborted) abort();
      else signal?.addEventListener('abort', abort, { once: true });
    },
    async pull(controller) {
      if (pending.length === 0) {
        // The server's body failed: fetch's own error, and no listener left on the signal.
        const next = await reader.read().catch((error: unknown) => {
          done(error);
          throw error;
        });
        if (next.done) {
          done();
          controller.close();
          return;
        }
        pending = next.value;
      }
      // Once the kill switch is off, the rest of the body comes as the server sent it.
      const on = !state.off;
      let size = slow && on ? Math.min(slow.chunkSize, pending.length) : pending.length;
      if (reset !== undefined && on) size = Math.min(size, Math.max(0, reset.after - sent));
      if (reset !== undefined && on && size === 0) {
        done();
        void reader.cancel().catch(() => {});
        controller.error(
          new TypeError('terminated', { cause: fetchFailed('ECONNRESET', response.url || 'http://x').cause }),
        );
        return;
      }
      if (slow && on && sent > 0) await pause(slow.delay, stop.signal);
      controller.enqueue(pending.subarray(0, size));
      pending = pending.subarray(size);
      sent += size;
    },
    cancel(reason) {
      done(reason);
      return reader.cancel(reason);
    },
  });
  return answeredBy(
    new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers }),
    response.url,
    response.redirected,
  );
}

/** Statuses whose response has no body (a Response with one cannot be made). */
function noBody(status: number): boolean {
  return status === 204 || status === 205 || status === 304;
}

/** A made-up response says which URL answered, as fetch's own does (`new Response()` has none). */
function answeredBy(response: Response, url: string, redirected = false): Response {
  return Object.defineProperties(response, { url: { value: url }, redirected: { value: redirected } });
}
