import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  type CallContext,
  createBus,
  type EventOf,
  HoldfastConfigError,
  ManualClock,
  TimeoutError,
  timeout,
} from '../src/index.js';

const never = () => new Promise<never>(() => {});

function setup(strategy: 'cooperative' | 'aggressive' = 'cooperative') {
  const clock = new ManualClock(1_000);
  const bus = createBus();
  const events: EventOf<'timeout'>[] = [];
  bus.on('timeout', (e) => events.push(e));
  return { clock, bus, events, policy: timeout(100, { strategy, clock, bus, name: 'inventory' }) };
}

describe('timeout() cooperative', () => {
  it('aborts the call signal at the deadline with a TimeoutError and emits a timeout event', async () => {
    const { clock, events, policy } = setup();
    let seen: AbortSignal | undefined;
    const call = policy.execute(({ signal }) => {
      seen = signal;
      return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
    });
    const outcome = expect(call).rejects.toMatchObject({
      code: 'E_TIMEOUT',
      message: 'inventory: timed out after 100 ms',
    });
    await clock.advance(99);
    expect(seen?.aborted).toBe(false);
    await clock.advance(1);
    await outcome;
    expect(seen?.reason).toBeInstanceOf(TimeoutError);
    expect(events).toEqual([
      { type: 'timeout', source: 'inventory', time: 1_100, timeout: 100, strategy: 'cooperative' },
    ]);
    expect(clock.pending).toBe(0);
  });

  it('turns a rejection that follows the deadline into a TimeoutError whose cause is that rejection', async () => {
    const { clock, policy } = setup();
    const own = new Error('aborted by fetch');
    const call = policy.execute(
      ({ signal }) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(own))),
    );
    const outcome = expect(call).rejects.toSatisfy((e: unknown) => e instanceof TimeoutError && e.cause === own);
    await clock.advance(100);
    await outcome;
  });

  it('returns a value that arrives after the deadline: the work was done (as Polly does)', async () => {
    const { clock, policy } = setup();
    const call = policy.execute(() => new Promise((resolve) => clock.setTimeout(() => resolve('late'), 150)));
    await clock.advance(150);
    await expect(call).resolves.toBe('late');
  });

  it('passes results and errors through untouched before the deadline, leaving no timer', async () => {
    const { clock, policy } = setup();
    await expect(policy.execute(() => 42)).resolves.toBe(42);
    const boom = new Error('boom');
    await expect(
      policy.execute(() => {
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect(clock.pending).toBe(0);
  });
});

describe('timeout() aggressive', () => {
  it('rejects at the deadline even when the function never settles', async () => {
    const { clock, events, policy } = setup('aggressive');
    let signal: AbortSignal | undefined;
    const call = policy.execute((ctx) => {
      signal = ctx.signal;
      return never();
    });
    const outcome = expect(call).rejects.toBeInstanceOf(TimeoutError);
    await clock.advance(100);
    await outcome;
    expect(signal?.aborted).toBe(true);
    expect(events).toHaveLength(1);
    expect(clock.pending).toBe(0);
  });

  it('drops a late rejection without an unhandled rejection', async () => {
    const { clock, policy } = setup('aggressive');
    const unhandled = vi.fn();
    process.on('unhandledRejection', unhandled);
    try {
      const call = policy.execute(
        () => new Promise((_, reject) => clock.setTimeout(() => reject(new Error('late')), 500)),
      );
      const outcome = expect(call).rejects.toBeInstanceOf(TimeoutError);
      await clock.advance(500);
      await outcome;
      await new Promise((r) => setImmediate(r));
      expect(unhandled).not.toHaveBeenCalled();
    } finally {
      process.off('unhandledRejection', unhandled);
    }
  });

  it("rejects at once with the caller's reason when the caller aborts", async () => {
    const { policy, clock } = setup('aggressive');
    const controller = new AbortController();
    const call = policy.execute(never, { signal: controller.signal });
    const reason = new Error('user went away');
    controller.abort(reason);
    await expect(call).rejects.toBe(reason);
    expect(clock.pending).toBe(0);
  });
});

describe('timeout() and the caller signal', () => {
  it("propagates the caller's abort to ctx.signal with the caller's reason", async () => {
    const { policy } = setup();
    const controller = new AbortController();
    let inner: AbortSignal | undefined;
    const call = policy.execute(
      ({ signal }) => {
        inner = signal;
        return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
      },
      { signal: controller.signal },
    );
    controller.abort('stop');
    await expect(call).rejects.toBe('stop');
    expect(inner?.reason).toBe('stop');
  });

  it('does not run the function when the caller has already aborted', async () => {
    const { policy, clock } = setup();
    const fn = vi.fn();
    await expect(policy.execute(fn, { signal: AbortSignal.abort('gone') })).rejects.toBe('gone');
    expect(fn).not.toHaveBeenCalled();
    expect(clock.pending).toBe(0);
  });

  it("removes its listener from the caller's signal when the call ends", async () => {
    const { policy } = setup();
    const controller = new AbortController();
    const add = vi.spyOn(controller.signal, 'addEventListener');
    const remove = vi.spyOn(controller.signal, 'removeEventListener');
    await policy.execute(() => 1, { signal: controller.signal });
    expect(add).toHaveBeenCalledTimes(1);
    expect(remove).toHaveBeenCalledTimes(1);
    expect(remove.mock.calls[0]?.[1]).toBe(add.mock.calls[0]?.[1]);
  });
});

describe('timeout() cost on the success path', () => {
  const Original = globalThis.AbortController;
  afterEach(() => {
    globalThis.AbortController = Original;
  });

  function countControllers() {
    const counts = { made: 0, aborted: 0 };
    globalThis.AbortController = class extends Original {
      constructor() {
        super();
        counts.made++;
      }
      override abort(reason?: unknown) {
        counts.aborted++;
        super.abort(reason);
      }
    };
    return counts;
  }

  it('makes no AbortController for a function that never reads ctx.signal', async () => {
    const counts = countControllers();
    const { policy } = setup();
    for (let i = 0; i < 10; i++) await policy.execute(() => i);
    expect(counts).toEqual({ made: 0, aborted: 0 });
  });

  it('makes the signal on first read and never calls abort() on success', async () => {
    const counts = countControllers();
    const { policy } = setup();
    let ctx: CallContext | undefined;
    await policy.execute((c) => {
      ctx = c;
      return c.signal.aborted;
    });
    expect(ctx?.signal.aborted).toBe(false);
    expect(counts).toEqual({ made: 1, aborted: 0 });
  });
});

describe('timeout() options', () => {
  it('rejects a bad limit, naming it and its value', () => {
    expect(() => timeout(-5)).toThrow(HoldfastConfigError);
    expect(() => timeout(-5)).toThrow(/^timeout: ms .*\(got -5\)$/);
    expect(() => timeout(Number.NaN)).toThrow(/timeout: ms/);
    expect(() => timeout(2 ** 31)).toThrow(/timeout: ms .*\(got 2147483648\)/);
  });

  it('rejects an unknown option and a bad strategy by name', () => {
    expect(() => timeout(10, { strategi: 'aggressive' } as never)).toThrow(
      'timeout: strategi is not a known option (got "aggressive")',
    );
    expect(() => timeout(10, { strategy: 'eager' as never })).toThrow(/timeout: strategy .*\(got "eager"\)/);
    expect(() => timeout(10, { clock: {} as never })).toThrow(
      'timeout: clock must be a Clock (now, setTimeout, clearTimeout) (got {})',
    );
  });
});
