import { whileLoading } from '@holdfast/core';
import type pRetryType from 'p-retry';

type PRetry = typeof pRetryType;

let loading: Promise<PRetry> | undefined;

/**
 * p-retry, for the CommonJS build (tsup.config.ts puts this file in place of `p-retry.ts`).
 * p-retry is ESM only, and Node 20 before 20.19 cannot require() it: a dynamic import loads it,
 * once. The load starts when this module is required, not at the first failure, so that it is
 * done before a test's fake timers move (a timer moved while the load is in flight would run
 * the next attempt after the test stopped advancing). A ManualClock waits for the load
 * (`whileLoading`). One that failed is tried again at the next retry.
 */
export function loadPRetry(): Promise<PRetry> {
  loading ??= whileLoading(
    import('p-retry').then(
      (module) => module.default,
      (error: unknown) => {
        loading = undefined;
        throw error;
      },
    ),
  );
  return loading;
}

// Begun now; a failure here is not the caller's: the first retry tries again, and rejects then.
loadPRetry().catch(() => {});
