import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { createBus, HoldfastConfigError, type HoldfastEvent, hasCode, pipeline, timeout } from '@holdfast/core';
import { retry } from '@holdfast/retry';
import { afterEach, describe, expect, it } from 'vitest';
import { seeded } from '../../../test/support/seeded.js';
import {
  chaosSwitch,
  InjectedFaultError,
  type InjectionPolicy,
  injectBehavior,
  injectFault,
  injectLatency,
  injectOutcome,
} from '../src/index.js';

afterEach(() => chaosSwitch.on());

const ok = async () => 'ok';

/** Runs `n` calls through `policy`; counts those that came back other than `ok`. */
async function count(policy: InjectionPolicy, n: number): Promise<number> {
  let touched = 0;
  for (let i = 0; i < n; i++) {
    const out = await policy.execute(ok).catch(() => 'thrown');
    if (out !== 'ok') touched++;
  }
  return touched;
}

describe('injection rates', () => {
  it.each([0.01, 0.2, 0.5, 0.9])(
    'rate %f holds over 20,000 seeded calls (within 5 standard deviations)',
    async (rate) => {
      const n = 20_000;
      const policy = injectFault({ rate, enabled: true, random: seeded(7) });
      const injected = await count(policy, n);
      const sd = Math.sqrt(n * rate * (1 - rate));
      expect(Math.abs(injected - n * rate)).toBeLessThan(5 * sd);
      expect(policy.injected).toBe(injected);
    },
  );

  it('the same seed picks the same calls', async () => {
    const picks = async () => {
      const policy = injectOutcome({ outcome: () => 'x', rate: 0.3, enabled: true, random: seeded(99) });
      const out: string[] = [];
      for (let i = 0; i < 200; i++) out.push(await policy.execute(ok));
      return out.join('');
    };
    expect(await picks()).toBe(await picks());
  });

  it('rate 0 never injects, rate 1 always does', async () => {
    expect(await count(injectFault({ rate: 0, enabled: true }), 1_000)).toBe(0);
    expect(await count(injectFault({ rate: 1, enabled: true }), 1_000)).toBe(1_000);
  });
});

describe('enable switches', () => {
  it('is off unless enabled on purpose', async () => {
    expect(await count(injectFault(), 100)).toBe(0);
    expect(await count(injectOutcome({ outcome: () => 1 }), 100)).toBe(0);
  });

  it('reads an enabled function on every call', async () => {
    let on = false;
    const policy = injectFault({ enabled: () => on });
    expect(await count(policy, 10)).toBe(0);
    on = true;
    expect(await count(policy, 10)).toBe(10);
    on = false;
    expect(await count(policy, 10)).toBe(0);
  });

  it('the kill switch turns every injection off at once, and on again', async () => {
    let behaviors = 0;
    const all = [
      injectFault({ enabled: true }),
      injectOutcome({ outcome: () => 'made up', enabled: true }),
      injectBehavior({ behavior: () => void behaviors++, enabled: true }),
      injectLatency({ latency: 1, enabled: true }),
    ];
    const chain = pipeline(...all);
    chaosSwitch.off();
    expect(chaosSwitch.isOn).toBe(false);
    for (let i = 0; i < 50; i++) expect(await chain.execute(ok)).toBe('ok');
    expect(all.map((p) => p.injected)).toEqual([0, 0, 0, 0]);
    expect(behaviors).toBe(0);
    chaosSwitch.on();
    await expect(chain.execute(ok)).rejects.toBeInstanceOf(InjectedFaultError);
  });

  it('HOLDFAST_CHAOS=off in the environment holds every injection off, even after on()', () => {
    const script = `
      import { chaosSwitch, injectFault } from '@holdfast/chaos';
      chaosSwitch.on();
      const p = injectFault({ enabled: true });
      let thrown = 0;
      for (let i = 0; i < 100; i++) await p.execute(() => 1).catch(() => thrown++);
      console.log(JSON.stringify({ on: chaosSwitch.isOn, thrown }));
    `;
    const run = (value: string | undefined) => {
      const child = spawnSync(
        process.execPath,
        ['--conditions=@holdfast/source', '--import', 'tsx', '--input-type=module', '-e', script],
        {
          cwd: resolve(import.meta.dirname, '..'),
          env: { ...process.env, HOLDFAST_CHAOS: value },
          encoding: 'utf8',
          timeout: 30_000,
        },
      );
      expect(child.stderr).toBe('');
      return JSON.parse(child.stdout) as { on: boolean; thrown: number };
    };
    // (HOLDFAST_CHAOS unset or `on`, the same script throws 100 times: the kill-switch test above.)
    expect(run('off')).toEqual({ on: false, thrown: 0 });
  }, 30_000);
});

describe('each injection', () => {
  it('injectLatency delays the call; an outer timeout sees a slow call', async () => {
    const slow = injectLatency({ latency: { min: 80, max: 120 }, enabled: true, random: seeded(1) });
    const started = performance.now();
    expect(await slow.execute(ok)).toBe('ok');
    expect(performance.now() - started).toBeGreaterThanOrEqual(75);
    const error = await pipeline(timeout(20), slow)
      .execute(ok)
      .catch((e: unknown) => e);
    expect(hasCode(error, 'E_TIMEOUT')).toBe(true);
  });

  it('injectLatency ends its wait when the caller aborts', async () => {
    const slow = injectLatency({ latency: 60_000, enabled: true });
    const controller = new AbortController();
    const pending = slow.execute(ok, { signal: controller.signal });
    controller.abort(new Error('caller gave up'));
    await expect(pending).rejects.toThrow('caller gave up');
  });

  it('injectFault throws an InjectedFaultError by default, or the fault given', async () => {
    const error = await injectFault({ enabled: true, name: 'flaky-db' })
      .execute(ok)
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InjectedFaultError);
    expect(error).toMatchObject({ code: 'E_INJECTED_FAULT', message: expect.stringContaining('flaky-db') });
    const reset = () => Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    await expect(injectFault({ enabled: true, fault: reset }).execute(ok)).rejects.toMatchObject({
      code: 'ECONNRESET',
    });
  });

  it('injectOutcome returns a made-up result without running the call', async () => {
    let ran = 0;
    const busy = injectOutcome({
      outcome: () => new Response(null, { status: 503, headers: { 'retry-after': '1' } }),
      enabled: true,
    });
    const res = await busy.execute(async () => {
      ran++;
      return new Response('real');
    });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(ran).toBe(0);
  });

  it('injectBehavior runs its side effect, then the call', async () => {
    const order: string[] = [];
    const monkey = injectBehavior({ behavior: async () => void order.push('behavior'), enabled: true });
    expect(
      await monkey.execute(async () => {
        order.push('call');
        return 'ok';
      }),
    ).toBe('ok');
    expect(order).toEqual(['behavior', 'call']);
  });

  it('composes in a pipeline: a retry outside recovers from injected faults', async () => {
    const flaky = injectFault({ rate: 0.5, enabled: true, random: seeded(3) });
    const resilient = pipeline(
      retry({
        maxAttempts: 10,
        backoff: { type: 'constant', initialDelay: 0 },
        retryOn: { error: () => true },
        budget: false,
      }),
      flaky,
    );
    let done = 0;
    for (let i = 0; i < 100; i++) if ((await resilient.execute(ok)) === 'ok') done++;
    expect(done).toBe(100);
    expect(flaky.injected).toBeGreaterThan(50);
  });

  it('reports each injection as chaos.inject on the bus', async () => {
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('chaos.inject', (e) => events.push(e));
    await injectLatency({ latency: 5, enabled: true, bus, name: 'lag' }).execute(ok);
    await injectFault({ enabled: true, bus })
      .execute(ok)
      .catch(() => {});
    await injectOutcome({ outcome: () => ({ status: 503 }), enabled: true, bus }).execute(ok);
    await injectBehavior({ behavior: () => {}, enabled: true, bus }).execute(ok);
    expect(events).toMatchObject([
      { type: 'chaos.inject', source: 'lag', kind: 'latency', detail: '+5 ms' },
      { source: 'injectFault', kind: 'fault', detail: 'E_INJECTED_FAULT' },
      { source: 'injectOutcome', kind: 'outcome', detail: '503' },
      { source: 'injectBehavior', kind: 'behavior', detail: 'behavior' },
    ]);
  });

  it('refuses bad options with HoldfastConfigError naming the option', () => {
    expect(() => injectFault({ rate: 1.5 })).toThrow(/rate/);
    expect(() => injectFault({ enabled: 'yes' as never })).toThrow(/enabled/);
    expect(() => injectLatency({ latency: { min: 10, max: 5 } })).toThrow(/max must be >= min/);
    expect(() => injectLatency({ latency: -1 })).toThrow(HoldfastConfigError);
    expect(() => injectOutcome({} as never)).toThrow(/outcome/);
  });
});
