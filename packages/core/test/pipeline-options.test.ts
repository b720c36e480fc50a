import { describe, expect, expectTypeOf, it } from 'vitest';
import { type ExecuteOptions, hedge, pipeline, timeout } from '../src/index.js';

describe("pipeline().execute takes its policies' per-call options, and they reach the policy wherever it sits", () => {
  it('hedge: { safe: true } given to the pipeline marks the call safe, also after a timeout()', async () => {
    const h = hedge({ delay: 1, budget: false, policies: false });
    const p = pipeline(timeout(5_000), h);
    expectTypeOf<{ safe: boolean }>().toExtend<Parameters<typeof p.execute>[1]>();
    let attempts = 0;
    let release = () => {};
    const gate = new Promise<void>((r) => (release = r));
    // A bound for the test only: with one attempt nothing else opens the gate.
    const bound = setTimeout(() => release(), 2_000);
    const out = await p.execute(
      async () => {
        if (++attempts === 2) release();
        await gate;
        return 'ok';
      },
      { safe: true },
    );
    clearTimeout(bound);
    // Before: the typed option was read by nothing (the hedge saw the timeout's scope): one attempt.
    expect(out).toBe('ok');
    expect(attempts).toBe(2);
  });

  it('a pipeline of policies without options of their own takes only a signal', () => {
    const p = pipeline(timeout(1_000), timeout(2_000));
    expectTypeOf(p.execute<number>)
      .parameter(1)
      .toEqualTypeOf<ExecuteOptions | undefined>();
  });
});
