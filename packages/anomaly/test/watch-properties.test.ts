/**
 * Property: an anomaly watch acting on a real failover set, fed any run of intervals (wild
 * latencies included: NaN, negative after a clock step, huge, infinite), operator drains, and
 * intervals of silence, never throws, keeps its snapshot plain JSON, never has more endpoints out
 * than its maxShare allows (two watches on one bus each keep to theirs), never takes out the last
 * endpoint in service, pairs every anomaly.detected with an anomaly.cleared, and puts back
 * everything it took out at dispose().
 */
import { createBus, type EventOf, ManualClock } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { anomalyWatch } from '../src/index.js';

const names = ['a', 'b', 'c', 'd'];
const latency = fc.oneof(
  { weight: 8, arbitrary: fc.double({ min: 1, max: 40, noNaN: true }) },
  { weight: 2, arbitrary: fc.double({ min: 200, max: 2_000, noNaN: true }) },
  { weight: 1, arbitrary: fc.constantFrom(Number.NaN, -3_600_000, 0, 1e12, Number.POSITIVE_INFINITY, -0) },
);
const calls = fc.array(fc.tuple(latency, fc.constantFrom('success', 'success', 'success', 'failure', 'reject')), {
  maxLength: 12,
});
const step = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.record({ kind: fc.constant('interval' as const), calls: fc.tuple(calls, calls, calls, calls) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constantFrom('drain' as const, 'undrain' as const),
      endpoint: fc.constantFrom(...names),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('quiet' as const), ms: fc.integer({ min: 1, max: 90_000 }) }) },
);

/** Whether JSON carries `v` as it is: no NaN or infinity (they become null), no undefined, no class. */
const plain = (v: unknown): boolean =>
  v === null ||
  typeof v === 'string' ||
  typeof v === 'boolean' ||
  (typeof v === 'number' && Number.isFinite(v)) ||
  (Array.isArray(v) && v.every(plain)) ||
  (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype && Object.values(v as object).every(plain));

describe('anomalyWatch on a failover set, any run', () => {
  it('keeps to its limits, pairs its events and leaves nothing out at dispose(), alone or two on one bus', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(step, { minLength: 1, maxLength: 60 }),
        fc.integer({ min: 1, max: 2 }),
        async (steps, count) => {
          const clock = new ManualClock(1_000_000);
          const bus = createBus();
          const api = failover({ name: 'api', bus, clock, endpoints: names, retry: false, policies: false });
          const watches = Array.from({ length: count }, (_, w) =>
            anomalyWatch({
              name: `watch-${w}`,
              bus,
              clock,
              interval: 1_000,
              raiseAfter: 1,
              minCalls: 1,
              baseline: { warmup: 2 },
              forest: { warmup: 2, window: 8, seed: w + 1 },
              actions: { eject: { failover: api, duration: 3_000 } },
            }),
          );
          const open = new Map<string, number>();
          const warnings: string[] = [];
          const onWarning = (w: Error) => warnings.push(w.message);
          process.on('warning', onWarning);
          const inService = () =>
            api.snapshot().endpoints.filter((e) => e.role !== 'drained' && e.ejection === 'none').length;
          const id = (e: { source: string; key: string; detector: string }) => `${e.source} ${e.key} ${e.detector}`;
          bus.on('anomaly.detected', (e) => open.set(id(e), (open.get(id(e)) ?? 0) + 1));
          bus.on('anomaly.cleared', (e) => open.set(id(e), (open.get(id(e)) ?? 0) - 1));
          const ours: EventOf<'failover.eject'>[] = [];
          bus.on('failover.eject', (e) => {
            if (e.reason !== 'anomaly') return;
            ours.push(e);
            // Never the last endpoint in service: after this ejection, another still takes calls.
            expect(inService()).toBeGreaterThanOrEqual(1);
          });
          try {
            for (const s of steps) {
              if (s.kind === 'interval') {
                s.calls.forEach((list, i) => {
                  for (const [ms, outcome] of list) {
                    const source = `api/${names[i]}`;
                    if (outcome === 'reject')
                      bus.emit({
                        type: 'breaker.reject',
                        source,
                        time: clock.now(),
                        state: 'open',
                        retryAt: 0,
                        code: 'E_CIRCUIT_OPEN',
                        fallback: false,
                      });
                    else
                      bus.emit({
                        type: `breaker.${outcome}`,
                        source,
                        time: clock.now(),
                        latency: ms,
                        code: undefined,
                      } as never);
                  }
                });
                await clock.advance(1_000);
              } else if (s.kind === 'drain') await api.drain(s.endpoint);
              else if (s.kind === 'undrain') api.undrain(s.endpoint);
              else if (s.kind === 'quiet') await clock.advance(s.ms);
              for (const watch of watches) {
                const snap = watch.snapshot();
                expect(plain(snap), JSON.stringify(snap)).toBe(true);
                expect(snap.ejected.length).toBeLessThanOrEqual(1); // floor(0.34 * 4)
              }
            }
            for (const watch of watches) watch.dispose();
            expect([...open.values()].every((n) => n === 0)).toBe(true);
            const out = api.snapshot().endpoints.filter((e) => e.ejection !== 'none' && e.reason === 'anomaly');
            expect(out.map((e) => e.name)).toEqual([]);
            expect(warnings).toEqual([]);
          } finally {
            process.off('warning', onWarning);
            for (const watch of watches) watch.dispose();
            api.dispose();
          }
        },
      ),
      { numRuns: 150 },
    );
  }, 120_000);
});
