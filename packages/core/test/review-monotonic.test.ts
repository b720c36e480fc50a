import { performance as hrPerformance } from 'node:perf_hooks';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { circuitBreaker } from '../../breaker/src/index.js';
import { retry } from '../../retry/src/index.js';
import { createBus, realClock, TimeoutError, timeout } from '../src/index.js';

// Outside review of 6128323b / 709d3c80: realClock.monotonic() reads perf_hooks' performance
// while the global Date is the one core saw at load, the fake clock's time while fake timers
// fake setTimeout, and the global performance otherwise. Three tests failed then: under fake
// timers it read the fake clock's system time, which vi.setSystemTime steps; it now reads the
// fake clock's performance.now(), which moves with its timers only.
type FakeConfig = NonNullable<Parameters<typeof vi.useFakeTimers>[0]>;
type Faked = NonNullable<FakeConfig['toFake']>;

afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
  vi.restoreAllMocks();
  vi.resetModules();
});

const mono = (): number => (realClock.monotonic as () => number)();
/** A call that ends only when its signal aborts (a cooperative timeout waits for the call). */
const never = ({ signal }: { signal: AbortSignal }) =>
  new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `read()` lies between two perf_hooks readings taken around it: it is the real performance.now(). */
function expectReal(read: () => number): void {
  const low = hrPerformance.now();
  const now = read();
  const high = hrPerformance.now();
  expect(now).toBeGreaterThanOrEqual(low);
  expect(now).toBeLessThanOrEqual(high);
}

describe('each toFake, installed after core loaded', () => {
  it.each<[string, Faked | undefined, boolean]>([
    ['default', undefined, true],
    ['Date', ['Date'], false],
    ['performance', ['performance'], false],
    ['Date and performance', ['Date', 'performance'], true],
    ['setTimeout only', ['setTimeout', 'clearTimeout'], true],
  ])('fake %s: advancing 5 s moves elapsed time by exactly 5 s iff fake time is read', (_, toFake, follows) => {
    vi.useFakeTimers(toFake === undefined ? undefined : { toFake });
    const before = mono();
    vi.advanceTimersByTime(5_000);
    const moved = mono() - before;
    if (follows) expect(moved).toBe(5_000);
    else expect(moved).toBeLessThan(1_000); // real time: what the real timers run on
  });

  it('fake Date only: vi.setSystemTime an hour either way does not move elapsed time (real performance)', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 3_600_000);
    expectReal(mono);
    vi.setSystemTime(Date.now() - 7_200_000);
    expectReal(mono);
  });

  it('fake performance only (Date and timers real): elapsed time is real time, in step with the real timers', async () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    expect(performance).not.toBe(hrPerformance); // the global was swapped
    const before = mono();
    await sleep(30); // a real timer
    expect(mono() - before).toBeGreaterThanOrEqual(29);
    expectReal(mono);
  });

  it('vi.setSystemTime without fake timers (a mocked Date): elapsed time is still the real performance.now()', () => {
    vi.setSystemTime(0);
    expect(Date.now()).toBe(0);
    expectReal(mono);
  });
});

describe('switched on and off repeatedly', () => {
  it('real after each useRealTimers, exactly the advanced amount under each install, never backwards within one mode', () => {
    const combos: (Faked | undefined)[] = [undefined, ['Date', 'performance'], ['Date'], ['performance'], undefined];
    for (const toFake of combos) {
      expectReal(mono);
      vi.useFakeTimers(toFake === undefined ? undefined : { toFake });
      let last = mono();
      for (let i = 0; i < 5; i++) {
        vi.advanceTimersByTime(7);
        const now = mono();
        expect(now).toBeGreaterThanOrEqual(last);
        last = now;
      }
      vi.useRealTimers();
      expectReal(mono);
    }
  });

  it("a spy on performance.now (perf_hooks' object, which is the global one) is followed without fake timers", () => {
    expect(globalThis.performance).toBe(hrPerformance);
    vi.spyOn(hrPerformance, 'now').mockReturnValue(123.5);
    expect(mono()).toBe(123.5);
  });

  it('(behaviour change, not counted a bug) a globalThis.performance a user replaced is not read while Date is the loaded one', () => {
    // Before 6128323b monotonic() read the global: README says it "is performance.now()".
    vi.stubGlobal('performance', { now: () => 42 });
    expect(performance.now()).toBe(42);
    expectReal(mono);
  });
});

describe('core loaded while fake timers are installed (a setup file)', () => {
  it.each<[string, Faked | undefined]>([
    ['default', undefined],
    ['Date', ['Date']],
    ['performance', ['performance']],
    ['Date and performance', ['Date', 'performance']],
  ])('fake %s at load: follows fakes as a core loaded before them does, real once they go', async (_, toFake) => {
    vi.useFakeTimers(toFake === undefined ? undefined : { toFake });
    vi.resetModules();
    const { realClock: loaded } = await import('../src/clock.js');
    const read = loaded.monotonic as () => number;
    const before = read();
    const beforeOld = mono();
    vi.advanceTimersByTime(5_000);
    expect(read() - before).toBeCloseTo(mono() - beforeOld, -2); // both copies agree (within 100 ms)
    vi.useRealTimers();
    expectReal(read);
    // Installed again, after load: moves with them again.
    vi.useFakeTimers({ toFake: ['Date', 'performance'] });
    const again = read();
    vi.advanceTimersByTime(1_000);
    expect(read() - again).toBe(1_000);
  });
});

describe('realClock timers and policies under vitest fake timers', () => {
  it('default fakes: a realClock timer of N ms fires when monotonic has moved >= N', () => {
    vi.useFakeTimers();
    const start = mono();
    let movedAtFire = -1;
    realClock.setTimeout(() => (movedAtFire = mono() - start), 250);
    vi.advanceTimersByTime(249);
    expect(movedAtFire).toBe(-1);
    vi.advanceTimersByTime(1);
    expect(movedAtFire).toBeGreaterThanOrEqual(250);
  });

  it('default fakes: a timeout fires at its deadline, not before', async () => {
    vi.useFakeTimers();
    const policy = timeout(100, { bus: createBus() });
    const call = policy.execute(never);
    const outcome = expect(call).rejects.toBeInstanceOf(TimeoutError);
    await vi.advanceTimersByTimeAsync(99);
    let settled = false;
    call.catch(() => (settled = true));
    await vi.advanceTimersByTimeAsync(0);
    expect(settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await outcome;
  });

  it('a timeout made on real timers fires under fake timers installed later, and again on real ones after', async () => {
    const policy = timeout(50, { bus: createBus() });
    await expect(policy.execute(never)).rejects.toBeInstanceOf(TimeoutError);
    vi.useFakeTimers();
    const faked = expect(policy.execute(never)).rejects.toBeInstanceOf(TimeoutError);
    await vi.advanceTimersByTimeAsync(50);
    await faked;
    vi.useRealTimers();
    const t0 = hrPerformance.now();
    await expect(policy.execute(never)).rejects.toBeInstanceOf(TimeoutError);
    expect(hrPerformance.now() - t0).toBeLessThan(1_000);
  });

  it.each<[string, Faked | undefined]>([
    ['default', undefined],
    ['Date and performance', ['Date', 'performance']],
    ['setTimeout only', ['setTimeout', 'clearTimeout']],
  ])('fake %s: a breaker open for 10 s turns half-open when 10 s are advanced, not at 9.9 s', (_, toFake) => {
    vi.useFakeTimers(toFake === undefined ? undefined : { toFake });
    const breaker = circuitBreaker({ policies: false, bus: createBus(), consecutiveFailures: 1, openFor: 10_000 });
    breaker.open();
    vi.advanceTimersByTime(9_900);
    expect(breaker.state).toBe('open');
    vi.advanceTimersByTime(100);
    expect(breaker.state).toBe('halfOpen');
  });

  it('default fakes: a retry with 1 s backoffs succeeds on its third attempt as fake time is advanced', async () => {
    // Warm up on real timers first: retry loads p-retry on a first failure (a real file read,
    // which no fake timer advance waits for).
    const warm = retry({
      maxAttempts: 2,
      backoff: { type: 'constant', initialDelay: 1 },
      jitter: 'none',
      bus: createBus(),
    });
    let tries = 0;
    await warm.execute(async () => {
      if (++tries < 2) throw Object.assign(new Error('reset'), { code: 'ECONNRESET' });
    });
    vi.useFakeTimers();
    const policy = retry({
      maxAttempts: 3,
      backoff: { type: 'constant', initialDelay: 1_000 },
      jitter: 'none',
      bus: createBus(),
    });
    let attempts = 0;
    const call = policy.execute(async () => {
      if (++attempts < 3) throw Object.assign(new Error('reset'), { code: 'ECONNRESET' });
      return 'ok';
    });
    for (let i = 0; i < 10 && attempts < 3; i++) await vi.advanceTimersByTimeAsync(1_000);
    await expect(call).resolves.toBe('ok');
    expect(attempts).toBe(3);
  });
});

describe('vi.setSystemTime under fake timers (a hand-set wall clock)', () => {
  // monotonic() is "a line that never steps (NTP, a VM resume, a hand-set clock move now() by
  // hours)". With setTimeout faked it returns the fake clock's `now`, which setSystemTime sets:
  // the faked performance.now() (what sinon keeps monotonic) does not move, and neither do the
  // fake timers (sinon shifts them with the step).
  it('under vi.useFakeTimers(), vi.setSystemTime an hour back does not move monotonic() (it moved it an hour back)', () => {
    vi.useFakeTimers();
    const before = mono();
    const perfBefore = performance.now();
    vi.setSystemTime(Date.now() - 3_600_000);
    expect(performance.now() - perfBefore).toBe(0); // the fake performance does not step
    expect(mono()).toBeGreaterThanOrEqual(before);
  });

  it('under vi.useFakeTimers(), vi.setSystemTime a minute ahead leaves a breaker open for 30 s open (it was half-open with no time advanced)', () => {
    vi.useFakeTimers();
    const breaker = circuitBreaker({ policies: false, bus: createBus(), consecutiveFailures: 1, openFor: 30_000 });
    breaker.open();
    vi.setSystemTime(Date.now() + 60_000);
    expect(breaker.state).toBe('open');
  });

  it('under vi.useFakeTimers(), a realClock timer of 250 ms fires when monotonic() moved 250 (it moved far less after setSystemTime back)', () => {
    vi.useFakeTimers();
    const start = mono();
    let movedAtFire: number | undefined;
    realClock.setTimeout(() => (movedAtFire = mono() - start), 250);
    vi.setSystemTime(Date.now() - 60_000);
    vi.advanceTimersByTime(250);
    expect(movedAtFire).toBeGreaterThanOrEqual(250);
  });

  it('fake Date and performance, timers real: setSystemTime does not step monotonic()', () => {
    vi.useFakeTimers({ toFake: ['Date', 'performance'] });
    const before = mono();
    vi.setSystemTime(Date.now() - 3_600_000);
    expect(mono()).toBe(before);
    vi.setSystemTime(Date.now() + 7_200_000);
    expect(mono()).toBe(before);
  });
});
