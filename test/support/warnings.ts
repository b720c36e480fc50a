import { afterEach, beforeEach } from 'vitest';

/** A process warning, as the tests read it. */
export interface Warned {
  readonly code?: string;
  readonly message: string;
}

/**
 * Records the process warnings of each test in the file that calls it (at its top level: it
 * registers a beforeEach and an afterEach). The array it returns is emptied before each test.
 */
export function recordWarnings(): Warned[] {
  const warnings: Warned[] = [];
  const onWarning = (w: Error & { code?: string }) => warnings.push({ code: w.code, message: w.message });
  beforeEach(() => {
    warnings.length = 0;
    process.on('warning', onWarning);
  });
  afterEach(() => {
    process.off('warning', onWarning);
  });
  return warnings;
}

/** One turn of the event loop: process.emitWarning() tells its listeners on the next tick. */
export const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
