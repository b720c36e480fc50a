import { BrokenCircuitError } from '@holdfast/core';
import { parseRetryAfter } from '@holdfast/retry';

/** The clients' jitter source, seeded so a run can be replayed with `DEMO_SEED`. */
export { seededRandom as seeded } from '@holdfast/core';

/**
 * When a refusal says to come back (epoch ms): an open breaker's `retryAt`, anywhere in the
 * error's cause chain, or a response's `Retry-After`. Undefined when it does not say.
 */
export function comeBackAt(outcome: unknown, now: number): number | undefined {
  if (outcome instanceof Response) {
    const wait = parseRetryAfter(outcome.headers.get('retry-after'), now);
    return wait === undefined ? undefined : now + wait;
  }
  for (let e: unknown = outcome; e instanceof Error; e = e.cause) {
    if (e instanceof BrokenCircuitError) return e.retryAt;
  }
  return undefined;
}

export interface PaceOptions {
  /** At most this many requests a second, whatever happens. */
  readonly perSecond: number;
  /** The first pause after a failure, in ms; it doubles with each failure in a row. */
  readonly backoff: number;
  /** The longest pause after failures, in ms. */
  readonly maxBackoff: number;
  /** The random source of the jitter, in [0, 1). */
  readonly random: () => number;
}

/**
 * One client's manners toward one service, as a well-built client has them: a steady pace, and
 * after a failure a pause that grows (exponential, with jitter so a fleet does not return in
 * step) and lasts at least until the refusal said to come back (an open breaker's `retryAt`, a
 * `Retry-After`). A half-open breaker whose probe is out says "now"; the growing pause is what
 * keeps the fleet from asking again in a hot loop.
 */
export class Pace {
  readonly #o: PaceOptions;
  #next = 0;
  #failures = 0;

  constructor(options: PaceOptions) {
    this.#o = options;
  }

  /** Waits for the next turn. Always on a timer, never only a microtask: the loop lets I/O in. */
  turn(): Promise<void> {
    const now = Date.now();
    const at = Math.max(now, this.#next);
    this.#next = at + 1000 / this.#o.perSecond;
    return new Promise((resolve) => setTimeout(resolve, at - now));
  }

  /** The call succeeded: the next failure starts from the first pause again. */
  succeeded(): void {
    this.#failures = 0;
  }

  /** The call failed, with this error or response: pause before the next turn. */
  failed(outcome: unknown): void {
    const now = Date.now();
    const { backoff, maxBackoff, random } = this.#o;
    const ceiling = Math.min(maxBackoff, backoff * 2 ** Math.min(this.#failures++, 16));
    const pause = ceiling / 2 + (random() * ceiling) / 2; // "equal jitter": never zero, never in step
    const asked = comeBackAt(outcome, now);
    const spread = asked === undefined ? 0 : asked + random() * backoff; // not all at the breaker's door at once
    this.#next = Math.max(this.#next, now + pause, spread);
  }
}
