import { busOption, clockOption, fnOption, nameOption, positiveDurationOption } from '@holdfast/core';
import { z } from 'zod';
import { idempotentOptionsSchema } from '../options.js';

const headerName = z
  .string()
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'must be an HTTP header name')
  .transform((name) => name.toLowerCase());

export const httpIdempotencyOptionsSchema = z.strictObject({
  /** Where records live: `memoryStore()` for one instance, `redisStore()` to share them. */
  store: idempotentOptionsSchema.shape.store,
  /** Methods the middleware guards; others pass through untouched, key or not. @default ['POST', 'PATCH'] */
  methods: z
    .array(z.string().regex(/^[A-Za-z]+$/, 'must be an HTTP method'))
    .min(1, 'must name at least one method: an empty list guards nothing (leave the middleware out instead)')
    .default(['POST', 'PATCH'])
    .transform((methods) => methods.map((m) => m.toUpperCase())),
  /** The request header that carries the key. @default 'Idempotency-Key' */
  header: headerName.default('idempotency-key'),
  /** Answer 400 to a guarded request without a key, instead of letting it through. @default false */
  required: z.boolean().default(false),
  /**
   * Who is calling, e.g. the authenticated account: part of the stored key, so two callers
   * using the same key never see each other's responses (a key is unique per client, as in
   * Stripe and the IETF Idempotency-Key draft). Required: a function returning a non-empty
   * string for every guarded request (may return a promise), or `'global'` to opt in to one
   * key space shared by every caller (a single trusted client only).
   */
  scope: z.union(
    [z.literal('global'), fnOption<(req: never) => string | undefined | PromiseLike<string | undefined>>()],
    { error: "must be a function of the request naming the caller, or 'global'" },
  ),
  /** Request headers that are part of the fingerprint, besides method, URL and body. @default [] */
  fingerprint: z.array(headerName).default([]),
  /**
   * Response headers stored and replayed besides `content-type`, `location`, `etag`,
   * `cache-control` and `link`. Credentials (`set-cookie`, `authorization`,
   * `proxy-authorization`, `authentication-info`, `proxy-authentication-info`), challenges
   * (`www-authenticate`, `proxy-authenticate`) and hop-by-hop headers are never stored, even if
   * listed.
   * @default []
   */
  replayHeaders: z.array(headerName).default([]),
  /**
   * The largest request body the middleware reads itself to fingerprint it (a body no parser
   * read yet); a larger one gets 413. @default 1_048_576 (1 MiB)
   */
  maxRequestBytes: z.number().int().positive().default(1_048_576),
  /** A larger response is sent in full but not stored: its key is released. @default 1_048_576 (1 MiB) */
  maxResponseBytes: z.number().int().positive().default(1_048_576),
  /** Store and replay 5xx responses too (Stripe does); by default their key is released. @default false */
  store5xx: z.boolean().default(false),
  leaseMs: idempotentOptionsSchema.shape.leaseMs,
  maxRunMs: idempotentOptionsSchema.shape.maxRunMs,
  ttlMs: idempotentOptionsSchema.shape.ttlMs,
  /**
   * Hold a retry that finds its key in progress until the first request completes, polling
   * every `interval` ms for at most `timeout` ms, then answer 409.
   * @default undefined (answer 409 at once)
   */
  wait: idempotentOptionsSchema.shape.wait,
  /**
   * The longest any store call may take before it counts as a store failure (a store that
   * answers in-process, like `memoryStore()`, is not timed). @default 2_000
   */
  storeTimeoutMs: positiveDurationOption.max(2_147_483_647).default(2_000),
  /**
   * How long storing a finished response may be retried when the store fails (a Redis
   * failover, a lost reply) before the response goes out unrecorded. The response waits for it.
   * @default 10_000
   */
  completeTimeoutMs: positiveDurationOption.max(2_147_483_647).default(10_000),
  /**
   * When the store fails or times out: `fail-closed` answers 503, `fail-open` runs the request
   * unprotected.
   * @default the store's own `onStoreError`, else 'fail-closed'
   */
  onStoreError: z.enum(['fail-closed', 'fail-open']).optional(),
  /** Shown as `source` on its events. @default 'idempotency' */
  name: nameOption.default('idempotency'),
  /** @default the global bus */
  bus: busOption.optional(),
  /** Times store calls and waits. @default the real clock */
  clock: clockOption.optional(),
});

/** Options of the HTTP middleware, for a framework whose requests are `Req`. */
export type HttpIdempotencyOptions<Req> = Omit<z.input<typeof httpIdempotencyOptionsSchema>, 'scope'> & {
  readonly scope: 'global' | ((req: Req) => string | undefined | PromiseLike<string | undefined>);
};

/** What a route may override (Fastify `config.idempotency`). */
export type RouteIdempotencyOptions<Req> = Partial<Omit<HttpIdempotencyOptions<Req>, 'bus' | 'clock' | 'name'>>;

export type ParsedHttpOptions = z.output<typeof httpIdempotencyOptionsSchema>;
