import { busOption, clockOption, fnOption, type HealthCheck, type PolicyRegistry } from '@holdfast/core';
import { z } from 'zod';

/** Validates the options of {@link dashboard}; {@link DashboardOptions} is inferred from it. */
export const dashboardOptionsSchema = z.strictObject({
  /** The bus the page follows: state changes, latencies, retry and idempotency counts. @default the global bus */
  bus: busOption.optional(),
  /** Where breakers, failover sets and budgets are registered. @default the process-wide registry */
  policies: z
    .custom<PolicyRegistry>((v) => typeof (v as PolicyRegistry | null)?.snapshots === 'function', {
      error: 'must be a PolicyRegistry (from createPolicyRegistry())',
    })
    .optional(),
  /**
   * The full URL path the page is served at; `<path>/snapshot` and `<path>/events` sit under it.
   * @default '/holdfast'
   */
  path: z
    .string()
    .regex(/^\/[^?#\s]*$/, { error: 'must be a URL path starting with "/"' })
    // The page asks `<path>/snapshot`: "//host" (or "/\\host", the same to a browser) is another host.
    .regex(/^(?!\/\/)[^\\]*$/, { error: 'must not start with "//" nor hold a backslash' })
    // Matched against the URL as the browser sends it: a path it sends otherwise (`é` as `%C3%A9`,
    // `"` as `%22`, a dot segment resolved) would 404 for good.
    .refine((p) => !/^\/(?!\/)[^?#\s\\]*$/.test(p) || asked(p) === p, {
      error: (issue) =>
        `would never match: a browser asks for "${asked(issue.input as string)}" instead; write it as a browser sends it (non-ASCII, quotes and control characters percent-encoded, no "." or ".." segment)`,
    })
    .transform((p) => (p.length > 1 ? p.replace(/\/+$/, '') : ''))
    .default('/holdfast'),
  /** The page's title and heading. @default 'holdfast' */
  title: z.string().min(1).max(200).default('holdfast'),
  /** How often (ms) each open page gets a fresh snapshot, besides right after every state change. @default 1000 */
  interval: z.number().int().min(50).max(60_000).default(1000),
  /**
   * Pages following the event stream at once; more get 503 with `Retry-After`, counted in the
   * snapshot's `stream.refused`. Each holds a connection and what it has not read. @default 100
   */
  maxClients: z.number().int().min(1).max(10_000).default(100),
  /**
   * Bytes a page may leave unsent: one that still has more an `interval` after it fell behind (it
   * does not read, or reads too slowly) is dropped at the next event due, counted in
   * `stream.dropped`. @default 1 MiB
   */
  maxBufferedBytes: z
    .number()
    .int()
    .min(64 * 1024)
    .max(2 ** 30)
    .default(2 ** 20),
  /** The clock snapshots are stamped with. @default the real clock */
  clock: clockOption.optional(),
  /**
   * Which failing checks make the page say "Not ready", as `healthReport({ critical })`: give it the
   * same function as `healthHandler({ critical })`, so the page and /health agree. @default every check
   */
  critical: fnOption<(check: HealthCheck) => boolean>().optional(),
});

/** The path a browser asks for when told to open `path`. */
const asked = (path: string): string => new URL(path, 'http://h').pathname;

/** Options of {@link dashboard}. */
export type DashboardOptions = z.input<typeof dashboardOptionsSchema>;
