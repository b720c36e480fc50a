/**
 * What anomaly detection costs: one sample through the robust baseline and through the
 * Half-Space forest (5 metrics, default 20 trees of depth 8), the bus's cost per call with a
 * watch attached, and the memory each detector holds.
 */
import { anomalyWatch, halfSpaceForest, robustBaseline, syntheticSeries } from '@holdfast/anomaly';
import { createBus, type HoldfastEvent } from '@holdfast/core';
import { compare, printRows } from './harness.js';

export async function benchAnomaly(): Promise<void> {
  const series = syntheticSeries('dailySpikes', { seed: 1 }).rows;
  const latencies = series.map((r) => r[0] as number);
  const wide = series.map((r) => [r[0] as number, (r[0] as number) / 3, r[1] as number, r[2] as number, 0]);
  let i = 0;
  let sink = 0;
  const baseline = robustBaseline({ direction: 'up' });
  const forest = halfSpaceForest({ dimensions: 5 });
  await compare({
    title: 'anomaly: per sample',
    baseline: 'read a sample',
    calls: 5_000,
    variants: [
      { name: 'read a sample', call: () => (sink += latencies[i++ % latencies.length] as number) },
      {
        name: 'robustBaseline.update',
        call: () => (sink += baseline.update(latencies[i++ % latencies.length] as number).score),
      },
      {
        name: 'halfSpaceForest.update (5 metrics)',
        call: () => (sink += forest.update(wide[i++ % wide.length] as number[]).score),
      },
    ],
  });

  const stops: (() => void)[] = [];
  const emitter = (watched: boolean) => {
    const bus = createBus();
    if (watched) {
      const watch = anomalyWatch({ bus, interval: 1_000 });
      stops.push(() => watch.dispose());
    }
    let n = 0;
    return async () => {
      if (bus.wants('breaker.success')) {
        bus.emit({ type: 'breaker.success', source: `api/${n % 8}`, time: 0, latency: n++ % 250 } as HoldfastEvent);
      }
      return 1;
    };
  };
  await compare({
    title: 'anomaly: the bus per call (an async call that emits breaker.success, 8 keys)',
    baseline: 'nobody listens',
    variants: [
      { name: 'nobody listens', call: emitter(false) },
      { name: 'anomalyWatch attached', call: emitter(true) },
    ],
  });
  for (const stop of stops) stop();

  printRows(
    'anomaly: memory per watched metric (heap after gc, 500 instances)',
    ['detector', 'bytes each'],
    [
      ['robustBaseline (one metric)', perInstance(() => robustBaseline())],
      ['robustBaseline with a 24-bin season', perInstance(() => robustBaseline({ season: { period: 288, bins: 24 } }))],
      ['halfSpaceForest, 5 metrics (default)', perInstance(() => halfSpaceForest({ dimensions: 5 }))],
      [
        'halfSpaceForest, 5 metrics, 10 trees of depth 6',
        perInstance(() => halfSpaceForest({ dimensions: 5, trees: 10, depth: 6 })),
      ],
      ['anomalyWatch key (5 baselines + forest + tally)', perWatchedKey()],
    ],
  );
  if (sink === 42) console.log('');
}

function heap(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

function perInstance(make: () => unknown, count = 500): number {
  const before = heap();
  const keep = Array.from({ length: count }, make);
  const after = heap();
  if (keep.length !== count) throw new Error('unreachable');
  return Math.round((after - before) / count);
}

function perWatchedKey(count = 200): number {
  const bus = createBus();
  const watch = anomalyWatch({ bus, interval: 60_000, maxKeys: count });
  const before = heap();
  for (let k = 0; k < count; k++) bus.emit({ type: 'breaker.success', source: `key-${k}`, time: 0, latency: 5 });
  const after = heap();
  watch.dispose();
  return Math.round((after - before) / count);
}
