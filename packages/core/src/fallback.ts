import { z } from 'zod';
import { bus as globalBus, shieldBus } from './bus.js';
import { type Clock, realClock } from './clock.js';
import { CallScope } from './context.js';
import { errorLabel } from './events.js';
import { busOption, clockOption, fnOption, nameOption, parseOptions } from './options.js';
import { type CallContext, type ExecuteOptions, invokeIn, type Operation, type Policy } from './policy.js';

/** What a fallback replaces: the failure, or the result `onResult` refused. */
export type FallbackCause =
  | { readonly reason: 'failure'; readonly error: unknown; readonly ctx: CallContext }
  | { readonly reason: 'result'; readonly result: unknown; readonly ctx: CallContext };

/** Validates the options of {@link fallback}; {@link FallbackOptions} is inferred from it. */
export const fallbackOptionsSchema = z
  .strictObject({
    /** The value served in place of a failure. Give `value` or `to`, not both. */
    value: z.unknown().optional(),
    /** Computes the replacement from what it replaces (the error or the refused result). */
    to: fnOption<(cause: FallbackCause) => unknown>().optional(),
    /** Which errors the fallback replaces. @default every error, except after an abort from outside */
    on: fnOption<(error: unknown) => boolean>().optional(),
    /** Results to replace as well, e.g. `(r) => r.status >= 500`. @default none */
    onResult: fnOption<(result: unknown) => boolean>().optional(),
    /** Shown as `source` on its events. @default 'fallback' */
    name: nameOption.default('fallback'),
    /** The bus its `fallback` events go to. @default the global bus */
    bus: busOption.optional(),
    /** @default the real clock */
    clock: clockOption.optional(),
  })
  .refine((o) => !('value' in o && o.value !== undefined && o.to !== undefined), {
    message: 'give `value` or `to`, not both',
    path: ['to'],
  })
  .refine((o) => ('value' in o && o.value !== undefined) || o.to !== undefined, {
    message: 'needs `value` or `to`',
    path: ['value'],
  });

/** Options of {@link fallback}. */
export type FallbackOptions = z.input<typeof fallbackOptionsSchema>;

/**
 * Serves a value in place of a failure (or of a result `onResult` refuses). `to` receives what
 * it replaces. An abort from outside (the caller, an outer timeout) is never replaced: it reaches the caller as it is.
 * Types: the replacement should be of the type the call returns; TypeScript cannot check it.
 *
 * @example
 * const prices = pipeline(fallback({ to: () => cachedPrices }), timeout(500), retry());
 * const list = await prices.execute(({ signal }) => loadPrices(signal));
 */
export function fallback(options: FallbackOptions): Policy {
  const o = parseOptions('fallback', fallbackOptionsSchema, options);
  const replace = o.to ?? (() => o.value);
  return new FallbackPolicy(
    o.name,
    replace,
    o.on,
    o.onResult,
    o.bus === undefined ? globalBus : shieldBus(o.bus, o.name),
    o.clock ?? realClock,
  );
}

class FallbackPolicy implements Policy {
  constructor(
    readonly name: string,
    readonly replace: (cause: FallbackCause) => unknown,
    readonly on: ((error: unknown) => boolean) | undefined,
    readonly onResult: ((result: unknown) => boolean) | undefined,
    readonly bus: typeof globalBus,
    readonly clock: Clock,
  ) {}

  async execute<T>(fn: Operation<T>, options?: ExecuteOptions): Promise<T> {
    const scope = new CallScope(options);
    // Aborted before it started: the function never runs, nothing is served in its place.
    if (scope.aborted) {
      scope.release();
      throw scope.reason;
    }
    try {
      let result: T;
      try {
        result = await invokeIn(fn, scope);
      } catch (error) {
        // The caller (or an outer timeout) gave up: nobody is left to serve.
        if (scope.aborted) throw error;
        if (this.on !== undefined && !this.on(error)) throw error;
        this.#emit('failure', error);
        return (await this.replace({ reason: 'failure', error, ctx: scope })) as T;
      }
      // Outside the catch above: a predicate or a replacement that fails is not a failure of
      // the call to replace again, it reaches the caller as it is (`to` runs once per call).
      if (this.onResult === undefined || !this.onResult(result)) return result;
      this.#emit('result', undefined);
      return (await this.replace({ reason: 'result', result, ctx: scope })) as T;
    } finally {
      scope.release();
    }
  }

  #emit(reason: 'failure' | 'result', error: unknown): void {
    if (!this.bus.wants('fallback')) return;
    this.bus.emit({ type: 'fallback', source: this.name, time: this.clock.now(), reason, code: errorLabel(error) });
  }
}
