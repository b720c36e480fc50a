import { whileLoading } from '@holdfast/core';
import type pRetryType from 'p-retry';

type PRetry = typeof pRetryType;

let loading: Promise<PRetry> | undefined;

/**
 * p-retry is ESM only. A dynamic import loads it from our ESM and CJS builds alike, once, and
 * only when a first attempt has failed: a call that succeeds first try never pays for it. A
 * ManualClock waits for the load (`whileLoading`), so tests see the same ticks in a fresh process.
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
