import { describe, expect, it } from 'vitest';
import {
  type CallContext,
  createBus,
  type ExecuteOptions,
  ManualClock,
  type Operation,
  type Policy,
  pipeline,
  TimeoutError,
  timeout,
} from '../src/index.js';

function recorder(name: string, log: string[]): Policy {
  return {
    name,
    async execute<T>(fn: Operation<T>, options?: ExecuteOptions) {
      log.push(`${name}:enter`);
      try {
        return await fn({ signal: options?.signal ?? new AbortController().signal, attempt: 1 });
      } finally {
        log.push(`${name}:exit`);
      }
    },
  };
}

describe('pipeline()', () => {
  it('runs the outermost policy first: pipeline(a, b, c) is a(b(c(fn)))', async () => {
    const log: string[] = [];
    const p = pipeline(recorder('a', log), recorder('b', log), recorder('c', log));
    await expect(p.execute(() => log.push('fn'))).resolves.toBe(4);
    expect(log).toEqual(['a:enter', 'b:enter', 'c:enter', 'fn', 'c:exit', 'b:exit', 'a:exit']);
    expect(p.name).toBe('a > b > c');
  });

  it('an inner timeout aborts the call before an outer one; each aborts with its own error', async () => {
    const clock = new ManualClock();
    const bus = createBus();
    const p = pipeline(timeout(100, { clock, bus, name: 'total' }), timeout(30, { clock, bus, name: 'try' }));
    let reason: unknown;
    const call = p.execute(
      ({ signal }) =>
        new Promise((_, reject) =>
          signal.addEventListener('abort', () => {
            reason = signal.reason;
            reject(signal.reason);
          }),
        ),
    );
    const outcome = expect(call).rejects.toMatchObject({ message: 'try: timed out after 30 ms' });
    await clock.advance(30);
    await outcome;
    expect(reason).toBeInstanceOf(TimeoutError);
    expect(clock.pending).toBe(0);
  });

  it("an outer timeout reaches the innermost function's signal", async () => {
    const clock = new ManualClock();
    const bus = createBus();
    const p = pipeline(timeout(50, { clock, bus, name: 'total' }), timeout(1_000, { clock, bus, name: 'try' }));
    let inner: CallContext | undefined;
    const call = p.execute((ctx) => {
      inner = ctx;
      return new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));
    });
    const outcome = expect(call).rejects.toMatchObject({ message: 'total: timed out after 50 ms' });
    await clock.advance(50);
    await outcome;
    expect(inner?.signal.aborted).toBe(true);
    expect(clock.pending).toBe(0);
  });

  it("carries the caller's signal to the innermost function", async () => {
    const bus = createBus();
    const p = pipeline(timeout(1_000, { bus }), timeout(1_000, { bus }));
    const controller = new AbortController();
    const call = p.execute(
      ({ signal }) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
      { signal: controller.signal },
    );
    controller.abort('cancelled');
    await expect(call).rejects.toBe('cancelled');
  });

  it('an empty pipeline runs the function with a context', async () => {
    await expect(pipeline().execute(({ attempt, signal }) => [attempt, signal.aborted])).resolves.toEqual([1, false]);
  });

  it('turns a synchronous throw into a rejection', async () => {
    const boom = new Error('sync');
    await expect(
      pipeline().execute(() => {
        throw boom;
      }),
    ).rejects.toBe(boom);
  });

  it('refuses an argument that is not a policy, saying which one', () => {
    expect(() => pipeline(timeout(10), {} as Policy)).toThrow(
      'pipeline: argument 1 is not a Policy (it has no execute method)',
    );
  });
});
