/**
 * Hostile review of injections, faultyFetch and the kill switch: rates as a property, flags that
 * throw, a switch turned off while injected waits are in progress, and options at their edges.
 */
import { createBus, HoldfastConfigError, type HoldfastEvent, seededRandom } from '@holdfast/core';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { chaosSwitch, faultyFetch, injectBehavior, injectFault, injectLatency, injectOutcome } from '../src/index.js';

afterEach(() => chaosSwitch.on());

const within = <T>(p: Promise<T>, ms: number) =>
  Promise.race([p, new Promise<'still waiting'>((r) => setTimeout(() => r('still waiting'), ms))]);

describe('injection, hostile: rates', () => {
  it('property: over 10,000 seeded calls the injected count is within 5 standard deviations of rate * n', async () => {
    await fc.assert(
      fc.asyncProperty(fc.double({ min: 0, max: 1, noNaN: true }), fc.integer(), async (rate, seed) => {
        const n = 10_000;
        const policy = injectFault({ rate, enabled: true, random: seededRandom(seed), bus: createBus() });
        let failed = 0;
        for (let i = 0; i < n; i++) await policy.execute(() => 1).catch(() => failed++);
        const sd = Math.sqrt(n * rate * (1 - rate));
        expect(Math.abs(failed - n * rate)).toBeLessThanOrEqual(5 * sd + 1);
        expect(policy.injected).toBe(failed);
        if (rate === 0) expect(failed).toBe(0);
        if (rate === 1) expect(failed).toBe(n);
      }),
      { numRuns: 25, seed: 20_240_601 },
    );
  }, 60_000);

  it('property: with the switch off, no injection of any kind, rate or flag ever touches a call', async () => {
    chaosSwitch.off();
    await fc.assert(
      fc.asyncProperty(fc.double({ min: 0, max: 1, noNaN: true }), fc.integer(), async (rate, seed) => {
        const bus = createBus();
        const events: HoldfastEvent[] = [];
        bus.on('*', (e) => events.push(e));
        const common = { rate, enabled: () => true, random: seededRandom(seed), bus };
        const policies = [
          injectFault(common),
          injectLatency({ ...common, latency: 60_000 }),
          injectOutcome({ ...common, outcome: () => 'made up' }),
          injectBehavior({ ...common, behavior: () => Promise.reject(new Error('behavior ran')) }),
        ];
        for (const policy of policies) {
          for (let i = 0; i < 50; i++) expect(await policy.execute(() => 'real')).toBe('real');
          expect(policy.injected).toBe(0);
        }
        const fetch = faultyFetch({
          enabled: () => true,
          random: seededRandom(seed),
          bus,
          faults: [{ type: 'refuse', rate }],
          fetch: async () => new Response('real'),
        });
        expect(await (await fetch('http://127.0.0.1:1/')).text()).toBe('real');
        expect(events).toEqual([]);
      }),
      { numRuns: 30, seed: 7 },
    );
  });
});

describe('injection, hostile: a flag that throws', () => {
  const broken = () => {
    throw new Error('flag service down');
  };

  it('execute() never throws synchronously: a throwing enabled() is read as off, the call runs untouched', async () => {
    for (const policy of [
      injectFault({ enabled: broken }),
      injectLatency({ enabled: broken, latency: 60_000 }),
      injectOutcome({ enabled: broken, outcome: () => 'made up' }),
    ]) {
      let returned: Promise<unknown> | undefined;
      // Before the fix: execute() threw 'flag service down' synchronously, past the caller's .catch().
      expect(() => {
        returned = policy.execute(() => 'real');
      }).not.toThrow();
      expect(await returned).toBe('real');
      expect(policy.injected).toBe(0);
    }
  });

  it('a throwing random source is read as not picked', async () => {
    const policy = injectFault({
      enabled: true,
      random: () => {
        throw new Error('entropy gone');
      },
    });
    expect(await policy.execute(() => 'real')).toBe('real');
  });

  it('faultyFetch with a throwing enabled() calls the real fetch', async () => {
    const fetch = faultyFetch({
      enabled: broken,
      faults: [{ type: 'refuse' }],
      fetch: async () => new Response('real'),
    });
    expect(await (await fetch('http://127.0.0.1:1/')).text()).toBe('real'); // rejected before the fix
  });
});

describe('injection, hostile: the kill switch and waits in progress', () => {
  it('chaosSwitch.off() ends an injected latency in progress: the call runs now, not a minute later', async () => {
    const policy = injectLatency({ enabled: true, latency: 60_000, bus: createBus() });
    let ran = 0;
    const calls = Array.from({ length: 5 }, () => policy.execute(() => ++ran));
    await new Promise((r) => setTimeout(r, 20));
    expect(ran).toBe(0);
    chaosSwitch.off();
    expect(await within(Promise.all(calls), 2_000)).toEqual([1, 2, 3, 4, 5]); // 'still waiting' before the fix
  });

  it('chaosSwitch.off() ends a faultyFetch delay and a hang in progress: each request goes to the real fetch', async () => {
    let real = 0;
    const inner = async () => new Response(`real ${++real}`);
    const delayed = faultyFetch({ enabled: true, faults: [{ type: 'delay', delay: 60_000 }], fetch: inner });
    const hung = faultyFetch({ enabled: true, faults: [{ type: 'hang' }], fetch: inner });
    const a = delayed('http://127.0.0.1:1/a').then((r) => r.text());
    const b = hung('http://127.0.0.1:1/b').then((r) => r.text());
    await new Promise((r) => setTimeout(r, 20));
    chaosSwitch.off();
    const texts = await within(Promise.all([a, b]), 2_000);
    expect(texts).not.toBe('still waiting');
    expect([...(texts as string[])].sort()).toEqual(['real 1', 'real 2']);
  });

  it('the caller may still abort a wait, and an off/on in between does not resurrect an ended one', async () => {
    const policy = injectLatency({ enabled: true, latency: 60_000, bus: createBus() });
    const controller = new AbortController();
    const call = policy.execute(() => 'ran', { signal: controller.signal }).catch((e: Error) => e.name);
    controller.abort();
    expect(await call).toBe('AbortError');
    chaosSwitch.off(); // nothing left waiting: must not throw nor run the aborted call
    chaosSwitch.on();
  });
});

describe('injectLatency, hostile: what a latency function returns', () => {
  it('Infinity or a huge figure waits (until the caller gives up), not 1 ms', async () => {
    for (const huge of [Number.POSITIVE_INFINITY, 1e12]) {
      const policy = injectLatency({ enabled: true, latency: () => huge, bus: createBus() });
      let ran = false;
      const out = await policy
        .execute(
          () => {
            ran = true;
          },
          { signal: AbortSignal.timeout(200) },
        )
        .catch((e: Error) => e.name);
      // Before the fix: Node turned the overflowing timer into 1 ms and the call ran at once.
      expect({ huge, out, ran }).toEqual({ huge, out: 'TimeoutError', ran: false });
    }
  });

  it('NaN, a negative figure or a non-number is no wait', async () => {
    for (const odd of [Number.NaN, -5, 'soon']) {
      const policy = injectLatency({ enabled: true, latency: () => odd as number, bus: createBus() });
      expect(
        await within(
          policy.execute(() => 'ran'),
          1_000,
        ),
      ).toBe('ran');
    }
  });
});

describe('faultyFetch, hostile: options', () => {
  it('a delay longer than a timer can wait is refused, not waited for 1 ms', () => {
    // Before the fix: accepted; Node printed a TimeoutOverflowWarning and the "35 days" took 1 ms.
    expect(() => faultyFetch({ faults: [{ type: 'delay', delay: 3_000_000_000 }] })).toThrow(HoldfastConfigError);
    expect(() => faultyFetch({ faults: [{ type: 'delay', delay: 3_000_000_000 }] })).toThrow(/delay.*2147483647/);
    expect(() => faultyFetch({ faults: [{ type: 'slowBody', delay: 3_000_000_000 }] })).toThrow(/delay/);
    expect(() => faultyFetch({ faults: [{ type: 'delay', delay: { min: 500, max: 10 } }] })).toThrow(/max/);
  });

  it('bad faults name the option', () => {
    const bad: [unknown, RegExp][] = [
      [{ type: 'status', status: 99 }, /status/],
      [{ type: 'status', status: 503, rate: 1.5 }, /rate/],
      [{ type: 'status', status: 503, rate: Number.NaN }, /rate/],
      [{ type: 'reset', after: -1, phase: 'body' }, /after/],
      [{ type: 'reset', phase: 'headers' }, /phase/],
      [{ type: 'delay', delay: -5 }, /delay/],
      [{ type: 'refuse', times: 0 }, /times/],
      [{ type: 'teapot' }, /type/],
    ];
    for (const [fault, message] of bad) {
      expect(() => faultyFetch({ faults: [fault as never] }), JSON.stringify(fault)).toThrow(message);
    }
    expect(() => faultyFetch({ faults: [] })).toThrow(/faults/);
    expect(() => injectFault({ rate: 2 })).toThrow(/rate/);
    expect(() => injectFault({ rate: -0.1 })).toThrow(/rate/);
    expect(() => injectLatency({ latency: Number.POSITIVE_INFINITY })).toThrow(/latency/);
    expect(() => injectLatency({ latency: { min: 10, max: 5 } })).toThrow(/max/);
  });
});

describe('secrets, hostile', () => {
  it('a token in a request URL reaches no event, error message or detail of faultyFetch', async () => {
    const bus = createBus();
    const seen: string[] = [];
    bus.on('*', (e) => seen.push(JSON.stringify(e)));
    const fetch = faultyFetch({
      enabled: true,
      bus,
      faults: [{ type: 'refuse' }],
      fetch: async () => new Response('real'),
    });
    const url = 'http://127.0.0.1:1/path?token=s3cr3t-token';
    const error = (await fetch(url).catch((e: unknown) => e)) as TypeError & { cause: Error };
    seen.push(String(error), String(error.cause), JSON.stringify(error.cause));
    expect(seen.join('\n')).not.toMatch(/s3cr3t/);
  });
});
