import { z } from 'zod';
import type { Bus } from './bus.js';
import type { Clock } from './clock.js';
import { type ConfigIssue, HoldfastConfigError } from './errors.js';
import { hideSecrets } from './redact.js';
import type { PolicyRegistry } from './registry.js';

/**
 * Parses a factory's options once, at construction. A bad option throws
 * {@link HoldfastConfigError} naming the factory, the option path and the value given.
 */
export function parseOptions<S extends z.ZodType>(owner: string, schema: S, input: unknown): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  throw new HoldfastConfigError(
    owner,
    result.error.issues.flatMap((issue) => toIssues(issue, input)),
  );
}

function toIssues(issue: z.core.$ZodIssue, input: unknown): ConfigIssue[] {
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => issueAt([...issue.path, key], 'is not a known option', input));
  }
  if (issue.code === 'invalid_union') {
    // The branch the value matched in shape (its issues lie deeper than the union) says what is wrong.
    const inner = issue.errors.find((branch) => branch.length > 0 && branch.every((i) => i.path.length > 0));
    if (inner !== undefined) {
      return inner.flatMap((i) => toIssues({ ...i, path: [...issue.path, ...i.path] } as z.core.$ZodIssue, input));
    }
  }
  return [issueAt(issue.path, issue.message, input)];
}

/**
 * The issue, with the value given at its path; without one when the path runs through a value
 * that is not an object (a string endpoint whose `name` is checked): its `undefined` would mislead.
 */
function issueAt(path: readonly PropertyKey[], message: string, input: unknown): ConfigIssue {
  let value = input;
  for (const key of path) {
    if (typeof value !== 'object' || value === null) {
      return value === input ? { path: path.join('.'), message, value: undefined } : { path: path.join('.'), message };
    }
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return { path: path.join('.'), message, value };
}

/**
 * A function-valued option. zod checks only that it is a function.
 * @typeParam F - the function's type, as the option's users see it
 */
export function fnOption<F extends (...args: never[]) => unknown>(what = 'must be a function') {
  return z.custom<F>((v) => typeof v === 'function', { error: what });
}

/** The longest delay a timer can wait: Node fires a longer one at once (with a warning). */
export const MAX_DELAY_MS = 2_147_483_647;

const maxDelay = { error: `must be <= ${MAX_DELAY_MS} ms (about 24.8 days): a longer timer fires at once` };

/** A non-negative, finite duration in milliseconds, short enough for a timer. */
export const durationOption = z.number().finite().nonnegative().max(MAX_DELAY_MS, maxDelay);

/** A strictly positive, finite duration in milliseconds, short enough for a timer. */
export const positiveDurationOption = z.number().finite().positive().max(MAX_DELAY_MS, maxDelay);

/** The `clock` option every time-based policy takes. */
export const clockOption = z.custom<Clock>(
  (v) =>
    typeof v === 'object' &&
    v !== null &&
    typeof (v as Clock).now === 'function' &&
    typeof (v as Clock).setTimeout === 'function' &&
    typeof (v as Clock).clearTimeout === 'function',
  { error: 'must be a Clock (now, setTimeout, clearTimeout)' },
);

/** The `bus` option every policy takes. */
export const busOption = z.custom<Bus>(
  (v) =>
    typeof v === 'object' &&
    v !== null &&
    typeof (v as Bus).emit === 'function' &&
    typeof (v as Bus).on === 'function' &&
    typeof (v as Bus).wants === 'function',
  { error: 'must be a Bus (from createBus())' },
);

/**
 * A policy name: what its events carry as `source`, and how snapshots, `healthReport()`, metrics
 * and error messages name it. A URL in it (a DSN from `process.env`) is shown without its
 * credentials and secret query parameters (`***`), like a failover endpoint's name.
 */
export const nameOption = z.string().min(1).max(200).transform(hideSecrets);

/**
 * Where a stateful policy lists itself for `healthReport()`, the dashboard and the metrics
 * packages (until `dispose()`), or `false` not to. @default the process-wide `policies`
 */
export const policiesOption = z.union([
  z.literal(false),
  z.custom<PolicyRegistry>((v) => typeof (v as PolicyRegistry | null)?.register === 'function', {
    error: 'must be a PolicyRegistry (from createPolicyRegistry()) or false',
  }),
]);

/**
 * A Fastify plugin's options without what Fastify's `register()` itself reads (`prefix`,
 * `logLevel`, `logSerializers`): the rest is the plugin's to check (a typo is an error).
 */
export function ownPluginOptions<T extends object>(options: T): Omit<T, 'prefix' | 'logLevel' | 'logSerializers'> {
  const {
    prefix: _prefix,
    logLevel: _logLevel,
    logSerializers: _logSerializers,
    ...own
  } = options as T & { prefix?: unknown; logLevel?: unknown; logSerializers?: unknown };
  return own;
}
