import { describe, expect, it } from 'vitest';
import { retry } from '../src/index.js';
import { finish, seeded, setup } from './support.js';

type Law = 'exponential' | 'linear' | 'constant';
type Jitter = 'full' | 'equal' | 'decorrelated' | 'none';

const initialDelay = 100;
const maxDelay = 2_000;
const maxAttempts = 8; // 7 waits: exponential reaches the cap at the 6th

/** The delay law before jitter, for retry n (1 = first retry). */
function base(law: Law, n: number): number {
  if (law === 'constant') return initialDelay;
  if (law === 'linear') return Math.min(maxDelay, initialDelay * n); // factor 1
  return Math.min(maxDelay, initialDelay * 2 ** (n - 1)); // factor 2
}

/** Runs `calls` calls that always fail, one after another, and returns each call's waits. */
async function draw(law: Law, jitter: Jitter, calls: number, seed: number): Promise<number[][]> {
  const { clock, bus } = setup();
  const policy = retry({
    backoff: { type: law, initialDelay, maxDelay },
    jitter,
    maxAttempts,
    budget: false,
    clock,
    bus,
    random: seeded(seed),
  });
  const runs: number[][] = [];
  for (let i = 0; i < calls; i++) {
    const waits: number[] = [];
    const off = bus.on('retry.attempt', (e) => waits.push(e.delay));
    const call = policy.execute(() => {
      throw new Error('down');
    });
    const outcome = expect(call).rejects.toMatchObject({ code: 'E_RETRY_EXHAUSTED', attempts: maxAttempts });
    await finish(clock);
    await outcome;
    off();
    runs.push(waits);
  }
  return runs;
}

describe('backoff and jitter, checked over many seeded draws', () => {
  const laws: Law[] = ['exponential', 'linear', 'constant'];

  for (const law of laws) {
    it(`${law}, jitter none: exactly the law, capped by maxDelay`, async () => {
      const runs = await draw(law, 'none', 3, 1);
      for (const waits of runs) expect(waits).toEqual(waits.map((_, i) => base(law, i + 1)));
      if (law === 'exponential') expect(runs[0]).toEqual([100, 200, 400, 800, 1_600, 2_000, 2_000]);
      if (law === 'linear') expect(runs[0]).toEqual([100, 200, 300, 400, 500, 600, 700]);
    });

    it(`${law}, jitter full: in [0, d), spread over the whole range`, async () => {
      const runs = await draw(law, 'full', 150, 2);
      for (let n = 1; n < maxAttempts; n++) {
        const d = base(law, n);
        const at = runs.map((waits) => waits[n - 1] as number);
        for (const wait of at) {
          expect(wait).toBeGreaterThanOrEqual(0);
          expect(wait).toBeLessThan(d);
        }
        expect(Math.min(...at)).toBeLessThan(d * 0.1);
        expect(Math.max(...at)).toBeGreaterThan(d * 0.9);
      }
    });

    it(`${law}, jitter equal: in [d/2, d), spread over that range`, async () => {
      const runs = await draw(law, 'equal', 150, 3);
      for (let n = 1; n < maxAttempts; n++) {
        const d = base(law, n);
        const at = runs.map((waits) => waits[n - 1] as number);
        for (const wait of at) {
          expect(wait).toBeGreaterThanOrEqual(d / 2);
          expect(wait).toBeLessThan(d);
        }
        expect(Math.min(...at)).toBeLessThan(d * 0.55);
        expect(Math.max(...at)).toBeGreaterThan(d * 0.95);
      }
    });
  }

  it('decorrelated: each wait in [initialDelay, min(maxDelay, 3 × the previous)]', async () => {
    const runs = await draw('exponential', 'decorrelated', 300, 4);
    let reachedCap = false;
    for (const waits of runs) {
      let previous = initialDelay;
      for (const wait of waits) {
        expect(wait).toBeGreaterThanOrEqual(initialDelay);
        expect(wait).toBeLessThanOrEqual(Math.min(maxDelay, previous * 3));
        if (wait > maxDelay * 0.9) reachedCap = true;
        previous = wait;
      }
    }
    const firsts = runs.map((w) => w[0] as number);
    expect(Math.max(...firsts)).toBeGreaterThan(280); // the first wait spreads up to 3 × 100
    expect(reachedCap).toBe(true);
  });

  it('the same seed draws the same waits; the default source is Math.random', async () => {
    expect(await draw('exponential', 'full', 5, 42)).toEqual(await draw('exponential', 'full', 5, 42));
    expect(await draw('exponential', 'full', 5, 42)).not.toEqual(await draw('exponential', 'full', 5, 43));
  });

  it('a linear factor adds factor × initialDelay per retry', async () => {
    const { clock, bus } = setup();
    const waits: number[] = [];
    bus.on('retry.attempt', (e) => waits.push(e.delay));
    const policy = retry({
      backoff: { type: 'linear', initialDelay: 100, factor: 0.5 },
      jitter: 'none',
      maxAttempts: 4,
      budget: false,
      clock,
      bus,
    });
    const call = policy.execute(() => Promise.reject(new Error('down')));
    const outcome = expect(call).rejects.toThrow();
    await finish(clock);
    await outcome;
    expect(waits).toEqual([100, 150, 200]);
  });
});
