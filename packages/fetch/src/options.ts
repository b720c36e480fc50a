import { BreakerRegistry, type BreakerRegistryOptions } from '@holdfast/breaker';
import {
  busOption,
  clockOption,
  durationOption,
  fnOption,
  type HedgeOptions,
  nameOption,
  positiveDurationOption,
} from '@holdfast/core';
import type { Failover } from '@holdfast/failover';
import type { AdaptiveConcurrencyOptions, BulkheadOptions } from '@holdfast/limit';
import type { RetryBudget } from '@holdfast/retry';
import { z } from 'zod';

const timeoutOption = z.union(
  [
    positiveDurationOption,
    z
      .strictObject({
        /** Each try, in ms. @default 10_000 */
        perTry: positiveDurationOption.optional(),
        /** The whole call, from its start (a Request's body read, retries and waits included), in ms. @default 30_000, or perTry if longer */
        total: positiveDurationOption.optional(),
      })
      .refine((t) => t.perTry === undefined || t.total === undefined || t.perTry <= t.total, {
        path: ['perTry'],
        error: (issue) =>
          `must be <= timeout.total (${(issue.input as { total: number }).total} ms): no try may outlast the call`,
      }),
  ],
  { error: 'must be ms (a number) or { perTry, total }' },
);

const retryOption = z.union(
  [
    z.literal(false),
    z.strictObject({
      /** Attempts in all, the first included. @default 3 */
      maxAttempts: z.number().int().min(1).max(20).optional(),
      /** Backoff before each retry (see @holdfast/retry). @default exponential from 100 ms, full jitter */
      backoff: z
        .strictObject({
          type: z.enum(['exponential', 'linear', 'constant']).optional(),
          initialDelay: durationOption.optional(),
          maxDelay: durationOption.optional(),
          factor: z.number().finite().positive().optional(),
        })
        .optional(),
      jitter: z.enum(['full', 'equal', 'decorrelated', 'none']).optional(),
      /** Statuses that are retried. @default [408, 429, 502, 503, 504] */
      statuses: z.array(z.number().int().min(400).max(599)).optional(),
    }),
  ],
  { error: 'must be false or { maxAttempts, backoff, jitter, statuses }' },
);

const plainObject = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Another policy's options, checked by it when resilientFetch makes it. What resilientFetch sets
 * itself (its `bus` and `clock`, a limiter's `name`, whether a request may be hedged and when) is refused
 * there, not ignored.
 */
const optionsOf = <T extends object>(keys: string[], error?: string) =>
  z.custom<T>(plainObject, { error }).superRefine((v, ctx) => {
    for (const key of keys.filter((k) => k in v)) {
      ctx.addIssue({
        code: 'custom',
        path: [key],
        message:
          key === 'safe'
            ? 'is decided per request: one safe to repeat (an idempotent method, or an idempotency key) is hedged, no other'
            : key === 'onFailure'
              ? 'is off here: a failed try is retried as `retry` says, never hedged at once'
              : "is resilientFetch's own option: give it there",
      });
    }
  });

const breakerOption = z.union(
  [z.literal(false), z.instanceof(BreakerRegistry), optionsOf<BreakerRegistryOptions>(['bus', 'clock'])],
  { error: 'must be false, a breakerRegistry(), or breakerRegistry options' },
);

const budgetOption = z.custom<RetryBudget | false>(
  (v) => v === false || (typeof v === 'object' && v !== null && typeof (v as RetryBudget).tryWithdraw === 'function'),
  { error: 'must be a retryBudget() or false' },
);

const failoverOption = z.custom<Failover<string>>(
  (v) => typeof v === 'object' && v !== null && typeof (v as Failover).execute === 'function',
  { error: 'must be a failover() set whose targets are base URLs' },
);

/** `hedge()` options, less what resilientFetch sets itself; checked by hedge() at construction. */
export type FetchHedgeOptions = Omit<HedgeOptions, 'safe' | 'onFailure' | 'bus' | 'clock' | 'policies'>;

const hedgeOption = z.union([z.literal(false), optionsOf<FetchHedgeOptions>(['safe', 'onFailure', 'bus', 'clock'])], {
  error: 'must be false or hedge() options, e.g. { delay: 50 }',
});

/** Per-host limiter options, less what resilientFetch sets itself; checked at construction. */
export type FetchBulkheadOptions = Omit<BulkheadOptions, 'name' | 'bus' | 'clock' | 'policies'>;
/** Per-host adaptive limiter options, less what resilientFetch sets itself; checked at construction. */
export type FetchAdaptiveOptions = Omit<AdaptiveConcurrencyOptions, 'name' | 'bus' | 'clock' | 'policies'>;

/** Most hosts a per-host limiter is kept for. @default 1000 */
const maxHosts = z.number().int().min(1).max(1_000_000).default(1000);

const concurrencyOption = z.union(
  [
    z.literal(false),
    z.strictObject({
      /** A fixed cap per host: `bulkhead()` options (`maxConcurrent`, `maxQueue`, `queueTimeout`). */
      bulkhead: optionsOf<FetchBulkheadOptions>(['name', 'bus', 'clock'], 'must be bulkhead() options'),
      maxHosts,
    }),
    z.strictObject({
      /** A learned cap per host: `adaptiveConcurrency()` options (`algorithm`, limits). */
      adaptive: optionsOf<FetchAdaptiveOptions>(['name', 'bus', 'clock'], 'must be adaptiveConcurrency() options'),
      maxHosts,
    }),
  ],
  { error: 'must be false, { bulkhead } or { adaptive }' },
);

function withoutCredentials(url: string): boolean {
  try {
    const parsed = new URL(url);
    return parsed.username === '' && parsed.password === '';
  } catch {
    return true; // not a URL: z.url() says so
  }
}

/** Base URLs on one host would share its breaker and limiter, and failover names endpoints by host. */
function oneEachHost(urls: string[], ctx: z.RefinementCtx): void {
  const first = new Map<string, number>();
  urls.forEach((url, i) => {
    const host = URL.canParse(url) ? new URL(url).host : undefined;
    const at = host === undefined ? undefined : first.get(host);
    if (at !== undefined) {
      ctx.addIssue({ code: 'custom', path: [i], message: `must be on another host than baseUrls.${at} (${host})` });
    } else if (host !== undefined) first.set(host, i);
  });
}

/**
 * Request headers with a meaning of their own (RFC 9110, cookies, proxies, tracing): as the
 * idempotency header, each would mark ordinary requests (every POST with a body, every
 * authenticated one) as keyed, safe to repeat.
 */
const otherPurpose = new Set(
  (
    'accept accept-charset accept-encoding accept-language authorization baggage cache-control connection ' +
    'content-encoding content-language content-length content-location content-md5 content-range content-type ' +
    'cookie date dnt expect forwarded from host if-match if-modified-since if-none-match if-range ' +
    'if-unmodified-since keep-alive max-forwards origin pragma priority proxy-authorization range referer ' +
    'sec-fetch-mode te traceparent tracestate trailer transfer-encoding upgrade user-agent via ' +
    'x-forwarded-for x-forwarded-host x-forwarded-proto x-real-ip'
  ).split(' '),
);

/** Validates the options of {@link resilientFetch}; {@link ResilientFetchOptions} is inferred from it. */
export const resilientFetchOptionsSchema = z
  .strictObject({
    /**
     * Base URLs to spread calls over and fail over between; requests then take a path, joined
     * under the base URL's path (`http://h/v1` and `/users` make `http://h/v1/users`). No
     * credentials (`user:pass@`): fetch refuses such URLs; send an `Authorization` header.
     */
    baseUrls: z
      .array(
        z
          .url({ protocol: /^https?$/ })
          .refine(withoutCredentials, {
            error: 'must not carry credentials (fetch refuses them): send an Authorization header instead',
          })
          .refine((url) => !URL.canParse(url) || !/[?#]/.test(new URL(url).href), {
            error: 'must not carry a query or a fragment: joining a path to it drops them',
          }),
      )
      .min(1)
      .superRefine(oneEachHost)
      .optional(),
    /** A failover set of your own whose endpoint targets are base URLs, instead of `baseUrls`. */
    failover: failoverOption.optional(),
    /**
     * With `baseUrls` or `failover`: `true` sends an absolute URL where it says, the caller's
     * headers and body with it. By default one under a base URL is the path under it (on every
     * base URL) and any other is refused with a TypeError, as a URL from a user must not pick
     * the host (axios' CVE-2025-27152). @default false
     */
    allowAbsoluteUrls: z
      .boolean()
      .default(false)
      .describe('with baseUrls or failover: send an absolute URL not under a base URL where it says'),
    /**
     * A number is the per-try limit (and the total too, where it is longer than 30 s). A `perTry`
     * longer than `total` is refused. @default { perTry: 10_000, total: 30_000 }
     */
    timeout: timeoutOption.optional(),
    /**
     * Retries of network errors, timeouts and `statuses`, honouring Retry-After. Only requests
     * that are safe to repeat are retried: idempotent methods, or ones with an Idempotency-Key.
     * `false` for none. @default { maxAttempts: 3 }
     */
    retry: retryOption.optional(),
    /** Circuit breakers, one per host. `false` for none. @default breakerRegistry() with its defaults */
    breaker: breakerOption.optional(),
    /**
     * Hedged requests: when a try has not answered after `delay` (ms, or `{ percentile }`), the
     * same request goes again (to another base URL when there are several); the first answer
     * wins, the others are aborted. Only requests safe to repeat are hedged, within a budget
     * (10% of calls by default). `false` for none. @default false
     */
    hedge: hedgeOption.default(false),
    /**
     * A cap on requests in flight per host: `{ bulkhead: { maxConcurrent, maxQueue? } }` or
     * `{ adaptive: { algorithm, ... } }`, plus `maxHosts`. A refused request goes to another
     * base URL, is never retried on the same host, and never counts against the host's breaker.
     * `false` for none. @default false
     */
    concurrency: concurrencyOption.default(false),
    /** The retry budget every retry draws from. `false` for none. @default retryBudget() of its own */
    budget: budgetOption.optional(),
    /**
     * `auto`: a POST or PATCH without an Idempotency-Key gets a fresh one, the same on each of
     * its retries, so it may be retried. Use it only against servers that honour the header.
     * @default false
     */
    idempotencyKey: z.union([z.literal('auto'), z.literal(false)]).default(false),
    /**
     * The header the key travels in: an HTTP header name (RFC 9110 token), not one requests carry
     * for another purpose (`Content-Type`, `Authorization`): every request with it would count as
     * keyed, and be retried and hedged. @default 'Idempotency-Key'
     */
    idempotencyHeader: z
      .string()
      .regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, {
        error: 'must be an HTTP header name (letters, digits, - and the like)',
      })
      .refine((name) => !otherPurpose.has(name.toLowerCase()), {
        error:
          'must be a header of its own, not one requests carry for another purpose: every request carrying it would count as keyed, and be retried and hedged',
      })
      .default('Idempotency-Key'),
    /**
     * Query parameters whose values never appear in error messages, events or snapshots (as
     * `***`), besides the defaults. Credentials in a URL (`user:pass@`) never appear either.
     * @default ['access_token', 'api_key', 'apikey', 'key', 'password', 'secret', 'sig', 'signature', 'token']
     */
    secretParams: z.array(z.string().min(1)).default([]),
    /**
     * `true`: a non-2xx response is thrown as an `HttpError` (its `response` attached).
     * `false`: it is returned, as fetch does. @default false
     */
    throwOnHttpError: z.boolean().default(false),
    /** The fetch underneath. @default globalThis.fetch */
    fetch: fnOption<typeof globalThis.fetch>().optional(),
    /** Shown as `source` on events. @default 'fetch' */
    name: nameOption.default('fetch'),
    /** @default the global bus */
    bus: busOption.optional(),
    /** @default the real clock */
    clock: clockOption.optional(),
  })
  .refine((o) => o.baseUrls === undefined || o.failover === undefined, {
    path: ['failover'],
    error: 'give baseUrls or failover, not both',
  });

/** Options of {@link resilientFetch}. */
export type ResilientFetchOptions = z.input<typeof resilientFetchOptionsSchema>;
export type ParsedFetchOptions = z.output<typeof resilientFetchOptionsSchema>;
