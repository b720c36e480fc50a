import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { runScript } from '../../../test/support/child.js';
import { DeadlineQueue } from '../src/deadlines.js';
import { ManualClock, realClock, TimeoutError, timeout } from '../src/index.js';

describe('deadline queue (one timer behind many deadlines)', () => {
  it('fires every deadline at its time, never early and never late, whatever the order of starts, cancels and waits', async () => {
    // A step: start a deadline, cancel one that is pending, or let time pass.
    const step = fc.oneof(
      fc.record({ kind: fc.constant('add' as const) }),
      fc.record({ kind: fc.constant('cancel' as const), pick: fc.nat() }),
      fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 250 }) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 200 }), fc.array(step, { maxLength: 60 }), async (ms, steps) => {
        const clock = new ManualClock(1_000);
        const fired: { id: number; at: number }[] = [];
        const queue = new DeadlineQueue<number>(ms, clock, (id) => fired.push({ id, at: clock.now() }));
        const due = new Map<number, number>();
        const handles = new Map<number, ReturnType<typeof queue.add>>();
        const cancelled = new Set<number>();
        let next = 0;
        for (const s of steps) {
          if (s.kind === 'add') {
            const id = next++;
            due.set(id, clock.now() + ms);
            handles.set(id, queue.add(id));
          } else if (s.kind === 'cancel') {
            const live = [...handles.keys()].filter((id) => !cancelled.has(id) && !fired.some((f) => f.id === id));
            const id = live[s.pick % Math.max(1, live.length)];
            if (id !== undefined) {
              queue.cancel(handles.get(id) as ReturnType<typeof queue.add>);
              cancelled.add(id);
            }
          } else {
            await clock.advance(s.ms);
          }
          // Nothing has fired before its time, or been forgotten after it.
          for (const [id, at] of due) {
            const hit = fired.filter((f) => f.id === id);
            if (cancelled.has(id)) continue;
            if (clock.now() >= at) expect(hit, `deadline ${id} due at ${at}`).toEqual([{ id, at }]);
            else expect(hit).toEqual([]);
          }
        }
        await clock.advance(ms);
        for (const id of cancelled) expect(fired.some((f) => f.id === id && f.at < (due.get(id) ?? 0))).toBe(false);
        expect(fired.length + cancelled.size).toBe(next);
        // Nothing pending, so no timer is left behind.
        expect(queue.size).toBe(0);
        expect(clock.pending).toBe(0);
      }),
      { numRuns: 150 },
    );
  });

  it('re-arms for what is left of the next deadline when the head was cancelled, not for the whole duration', async () => {
    const clock = new ManualClock(0);
    const fired: number[] = [];
    const queue = new DeadlineQueue<string>(100, clock, () => fired.push(clock.now()));
    const first = queue.add('a'); // due 100
    await clock.advance(60);
    queue.add('b'); // due 160
    queue.cancel(first);
    await clock.advance(99); // t = 159
    expect(fired).toEqual([]);
    await clock.advance(1); // t = 160
    expect(fired).toEqual([160]);
    expect(clock.pending).toBe(0);
  });

  it('on the real clock, a deadline is never early and a settled call leaves no timer that holds the process', async () => {
    const queue = new DeadlineQueue<number>(40, realClock, () => {});
    for (let i = 0; i < 10_000; i++) queue.cancel(queue.add(i));
    expect(queue.size).toBe(0);

    const policy = timeout(40);
    // Cancel the head so the timer wakes before the next deadline and must re-arm for the rest.
    await policy.execute(async () => 1);
    await new Promise((r) => setTimeout(r, 15));
    const started = performance.now();
    const error = await policy
      .execute(
        ({ signal }) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
      )
      .catch((e: unknown) => e);
    const waited = performance.now() - started;
    expect(error).toBeInstanceOf(TimeoutError);
    expect(waited).toBeGreaterThanOrEqual(39); // performance.now() rounding: never a whole ms early
    expect(waited).toBeLessThan(5_000); // it fired at all, though the head it was armed for had gone
  });

  it('many calls in flight at once each get their own deadline from one timer', async () => {
    const policy = timeout(30);
    const outcomes = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        policy
          .execute(({ signal }) =>
            i % 2 === 0
              ? Promise.resolve('fast')
              : new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
          )
          .catch((e: { code?: string }) => e.code),
      ),
    );
    expect(outcomes.filter((o) => o === 'fast')).toHaveLength(100);
    expect(outcomes.filter((o) => o === 'E_TIMEOUT')).toHaveLength(100);
  });

  it('a process whose calls went through minute-long timeouts exits as soon as its work is done', async () => {
    const script = fileURLToPath(new URL('./fixtures/deadlines-exit.ts', import.meta.url));
    const started = performance.now();
    // Deadlines of 60 s: a live timer would hold the child until this guard kills it.
    const result = await runScript(script, { cwd: fileURLToPath(new URL('..', import.meta.url)), killAfterMs: 45_000 });
    expect(result.stderr).toBe('');
    expect(result.killed).toBe(false);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout.trim()) as { ok: number; expired: string; waited: number };
    expect(report).toMatchObject({ ok: 2_100, expired: 'E_TIMEOUT' });
    expect(report.waited).toBeGreaterThanOrEqual(49);
    // Far less than the 60 s deadlines of its calls (tsx start-up included).
    expect(performance.now() - started).toBeLessThan(40_000);
  }, 60_000);
});
