/**
 * Hostile review of drill(): a drill must stop by itself within its bound, play its restore step
 * whatever an earlier step or the load did, and leave no step to run after it has settled.
 */
import { describe, expect, it } from 'vitest';
import { drill } from '../src/index.js';

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('drill, hostile', () => {
  it('a driver that throws: the drill settles only once its steps have played, so none runs after it', async () => {
    const ran: string[] = [];
    let settled = false;
    const outcome = await drill({
      print: false,
      load: {
        duration: 300,
        drive: async () => {
          throw new Error('driver bug');
        },
      },
      steps: [
        { at: 100, name: 'kill', run: () => void ran.push(`kill settled=${settled}`) },
        { at: 200, name: 'restore', run: () => void ran.push(`restore settled=${settled}`) },
      ],
    }).then(
      () => 'resolved',
      (e: Error) => e.message,
    );
    settled = true;
    await tick(300);
    expect(outcome).toBe('driver bug');
    // Before the fix the drill rejected at once and both steps ran after: a kill after the
    // caller's clean-up.
    expect(ran).toEqual(['kill settled=false', 'restore settled=false']);
  });

  it('a step that throws does not stop the restore step after it', async () => {
    const ran: string[] = [];
    const result = await drill({
      print: false,
      load: { request: () => true, rate: 50, duration: 300 },
      steps: [
        {
          at: 50,
          name: 'kill',
          run: () => {
            throw new Error('kill failed');
          },
        },
        { at: 100, name: 'freeze', run: () => Promise.reject(new Error('freeze failed')) },
        { at: 150, name: 'restore', run: () => void ran.push('restore') },
      ],
    });
    expect(ran).toEqual(['restore']);
    expect(result.steps.map((s) => s.error ?? 'ok')).toEqual(['kill failed', 'freeze failed', 'ok']);
  });

  it('a driven load whose request never settles ends within duration + timeout, that request counted (cut)', async () => {
    const started = performance.now();
    const result = await Promise.race([
      drill({
        print: false,
        load: {
          duration: 200,
          timeout: 300,
          drive: async (send) => {
            await send(() => Promise.resolve(true));
            await send(() => new Promise(() => {})).catch(() => {});
          },
        },
      }),
      tick(5_000).then(() => 'still running after 5 s' as const),
    ]);
    // Before the fix: 'still running' (the drill waited for the hung request forever).
    expect(result).not.toBe('still running after 5 s');
    if (typeof result === 'string') return;
    expect(performance.now() - started).toBeLessThan(4_000);
    // It timed out after the load's end: cut off by the end of the run, as the README says.
    expect(result.load).toMatchObject({ sent: 1, succeeded: 1, failed: 0, cut: 1 });
  }, 10_000);

  it('a driver that ignores its signal and never resolves: the drill stops waiting at duration + timeout and does not pass', async () => {
    const result = await Promise.race([
      drill({
        print: false,
        load: {
          duration: 200,
          timeout: 300,
          drive: async (send) => {
            await send(() => Promise.resolve(true));
            await new Promise(() => {}); // a driver bug: never returns
          },
        },
      }),
      tick(5_000).then(() => 'still running after 5 s' as const),
    ]);
    expect(result).not.toBe('still running after 5 s');
    if (typeof result === 'string') return;
    expect(result.passed).toBe(false);
    expect(result.load.hung).toBe(true);
    expect(result.report).toMatch(/HUNG/);
  }, 10_000);

  it('a request that throws synchronously, or returns a non-promise, is counted, not thrown', async () => {
    let i = 0;
    const result = await drill({
      print: false,
      load: {
        request: () => {
          i++;
          if (i % 2) throw new Error('sync');
          return 'value';
        },
        rate: 100,
        duration: 200,
      },
    });
    expect(result.load.sent).toBeGreaterThan(0);
    expect(result.load.failed + result.load.succeeded).toBe(result.load.sent);
    expect(result.load.failed).toBeGreaterThan(0);
  });
});
