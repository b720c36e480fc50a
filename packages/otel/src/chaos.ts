import { hiddenName } from '@holdfast/core';
import type { Attributes, BatchObservableResult, Meter } from '@opentelemetry/api';
import type { Handlers } from './metrics.js';
import { attributeNames as A, metricNames as M } from './names.js';

/**
 * Metrics of faults injected on purpose (@holdfast/chaos), so that a drill's faults are counted
 * apart from real ones: injections by kind, and the fault proxy toxics on now.
 */
export function meterChaos(meter: Meter): { handlers: Handlers; dispose: () => void } {
  const injections = meter.createObservableCounter(M.chaosInjections, {
    unit: '{injection}',
    description: 'Faults injected into calls on purpose by @holdfast/chaos, by kind.',
  });
  const toxics = meter.createObservableUpDownCounter(M.chaosToxicsActive, {
    unit: '{toxic}',
    description: 'Fault proxy toxics on now, by proxy and toxic type.',
  });
  const injected = new Map<string, { attributes: Attributes; value: number }>();
  const active = new Map<string, { attributes: Attributes; names: Set<string> }>();

  const handlers: Handlers = {
    'chaos.inject': (e) => {
      const kind = hiddenName(e.kind);
      const key = `${e.source}\u0000${kind}`;
      const row = injected.get(key);
      if (row) row.value++;
      else injected.set(key, { attributes: { [A.policy]: e.source, [A.chaosKind]: kind }, value: 1 });
    },
    'chaos.toxic': (e) => {
      const toxic = hiddenName(e.toxic);
      const key = `${e.source}\u0000${toxic}`;
      let row = active.get(key);
      if (row === undefined) {
        row = { attributes: { [A.policy]: e.source, [A.chaosToxic]: toxic }, names: new Set() };
        active.set(key, row);
      }
      if (e.active) row.names.add(e.name);
      else row.names.delete(e.name);
    },
  };
  const observe = (result: BatchObservableResult) => {
    for (const row of injected.values()) result.observe(injections, row.value, row.attributes);
    for (const row of active.values()) result.observe(toxics, row.names.size, row.attributes);
  };
  meter.addBatchObservableCallback(observe, [injections, toxics]);
  return { handlers, dispose: () => meter.removeBatchObservableCallback(observe, [injections, toxics]) };
}
