import pRetry from 'p-retry';

/**
 * p-retry, for the ESM build (and for source, as vitest and tsx load it): imported statically,
 * so it is loaded when this module is, before any call. A retry then waits on nothing but its
 * own timer: under a test's fake timers (`vi.useFakeTimers()`), advancing past the backoffs runs
 * every attempt, in a fresh process too. The CommonJS build gets `p-retry-cjs.ts` instead
 * (tsup.config.ts): p-retry is ESM only, and Node 20 before 20.19 cannot require() it.
 */
const loaded = Promise.resolve(pRetry);

/** p-retry: loaded already. */
export function loadPRetry(): Promise<typeof pRetry> {
  return loaded;
}
