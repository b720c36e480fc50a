import { describe, expect, it } from 'vitest';
import { wallOnlyClock } from '../../../test/support/wall-only-clock.js';
import { redisRateLimiter } from '../src/redis.js';

/** A connected client of a server that never answers (SIGSTOPped). */
function hungClient() {
  return {
    status: 'ready',
    call: () => new Promise<never>(() => {}),
    once: () => {},
    removeListener: () => {},
  };
}

describe('redisRateLimiter: commandTimeout when the clock line goes back (review)', () => {
  it('a decision in flight gives up within two commandTimeouts, not an hour, after a clock without monotonic() steps back an hour', async () => {
    const { clock, timers: manual, step } = wallOnlyClock();
    const limiter = redisRateLimiter({
      client: hungClient(),
      limit: 10,
      interval: 1_000,
      commandTimeout: 50,
      onRedisError: 'closed',
      clock,
      policies: false,
    });
    const outcomes: string[] = [];
    const first = limiter.take('k').then(
      () => 'allowed',
      (error: Error) => error.message,
    );
    step(-3_600_000);
    // One made after the step, on the new line, must not wait behind the first either.
    const second = limiter.take('k').then(
      () => 'allowed',
      (error: Error) => error.message,
    );
    void first.then((o) => outcomes.push(`first: ${o}`));
    void second.then((o) => outcomes.push(`second: ${o}`));
    await manual.advance(100);
    expect(outcomes).toEqual([
      expect.stringMatching(/^first: .*Redis did not answer within 50 ms/),
      expect.stringMatching(/^second: .*Redis did not answer within 50 ms/),
    ]);
    // And a decision after that still times out on time.
    const third = limiter.take('k').then(
      () => 'allowed',
      (error: Error) => error.message,
    );
    await manual.advance(50);
    await expect(third).resolves.toMatch(/Redis did not answer within 50 ms/);
    limiter.dispose();
  });
});
