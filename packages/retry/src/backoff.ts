import { DEFAULT_MAX_DELAY, type ParsedRetryOptions } from './options.js';

/** A backoff law with its defaults resolved. */
export interface Backoff {
  readonly type: 'exponential' | 'linear' | 'constant';
  readonly initialDelay: number;
  readonly maxDelay: number;
  readonly factor: number;
  readonly jitter: 'full' | 'equal' | 'decorrelated' | 'none';
}

export function resolveBackoff(options: ParsedRetryOptions): Backoff {
  const { type, initialDelay, maxDelay, factor } = options.backoff;
  return {
    type,
    initialDelay,
    maxDelay: maxDelay ?? Math.max(DEFAULT_MAX_DELAY, initialDelay),
    factor: factor ?? (type === 'linear' ? 1 : 2),
    jitter: options.jitter,
  };
}

/** The delay before retry `n` (1 for the first retry), before jitter. */
export function baseDelay(law: Backoff, n: number): number {
  // 0 × a growth that overflowed to Infinity is NaN: a wait that no maxElapsed could stop.
  if (law.initialDelay === 0) return 0;
  switch (law.type) {
    case 'constant':
      return law.initialDelay;
    case 'linear':
      return Math.min(law.maxDelay, law.initialDelay * (1 + law.factor * (n - 1)));
    case 'exponential':
      return Math.min(law.maxDelay, law.initialDelay * law.factor ** (n - 1));
  }
}

/**
 * The delay before retry `n`, jitter applied. `previous` is the last delay waited (the
 * initial delay before the first retry): decorrelated jitter grows from it.
 */
export function nextDelay(law: Backoff, n: number, previous: number, random: () => number): number {
  switch (law.jitter) {
    case 'none':
      return baseDelay(law, n);
    case 'full':
      return draw(random) * baseDelay(law, n);
    case 'equal': {
      const base = baseDelay(law, n);
      return base / 2 + (draw(random) * base) / 2;
    }
    case 'decorrelated': {
      const high = Math.min(law.maxDelay, Math.max(law.initialDelay, previous * 3));
      return law.initialDelay + draw(random) * (high - law.initialDelay);
    }
  }
}

/**
 * A draw from the user's random source, held to [0, 1]: outside it a wait would pass maxDelay,
 * go negative, or be NaN or Infinity, which Node's setTimeout fires after 1 ms. NaN reads as 1.
 */
function draw(random: () => number): number {
  const u = random();
  return u >= 0 ? Math.min(u, 1) : u < 0 ? 0 : 1;
}
