import { type IdempotencyStore, memoryStore } from '../../src/index.js';

/**
 * A memoryStore() as a store in another process (Redis) looks to the middleware: its calls are
 * not the in-process store's, so a response's end waits for its completion. Each completion
 * first waits `completeMs`; `complete`, when given, answers instead of the inner store (a store
 * that fails or hangs).
 */
export function slowStore(
  options: { completeMs?: number; complete?: () => Promise<boolean> } = {},
): IdempotencyStore & { readonly inner: ReturnType<typeof memoryStore> } {
  const inner = memoryStore();
  const { completeMs = 0, complete } = options;
  return {
    inner,
    claim: (key, fingerprint, leaseMs) => inner.claim(key, fingerprint, leaseMs),
    complete: async (key, token, outcome, ttlMs) => {
      if (completeMs > 0) await new Promise((resolve) => setTimeout(resolve, completeMs));
      return complete === undefined ? inner.complete(key, token, outcome, ttlMs) : complete();
    },
    release: (key, token) => inner.release(key, token),
  };
}
