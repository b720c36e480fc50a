import { type EventOf, hiddenName, OTHER_POLICY, PolicyLabels } from '@holdfast/core';
import type { Attributes, BatchObservableResult, Meter, Observable } from '@opentelemetry/api';
import { type Handlers, observing, type Part } from './metrics.js';
import { attributeNames as A, metricNames as M } from './names.js';

/**
 * Metrics of faults injected on purpose (@holdfast/chaos), so that a drill's faults are counted
 * apart from real ones: injections by kind, and the fault proxy toxics on now. `toxic` takes
 * `chaos.toxic` events as emitted (not labelled as a policy's): proxies never register, so never
 * leave the registry, and are labelled apart (see `active`).
 */
export function meterChaos(maxPolicies: number): Part & { toxic: (e: EventOf<'chaos.toxic'>) => void } {
  const injected = new Map<string, { attributes: Attributes; value: number }>();
  // Per proxy (by its name as given), the names of its toxics on now, by toxic type. One whose
  // toxics all went off is observed at 0 once, then leaves and frees its place: a row kept for
  // every drill's proxy ever seen grew for good, and took the policies' places.
  const proxies = new PolicyLabels(maxPolicies, 'instrument');
  const active = new Map<string, Map<string, Set<unknown>>>();

  const handlers: Handlers = {
    'chaos.inject': (e) => {
      const kind = hiddenName(e.kind);
      const key = JSON.stringify([e.source, kind]);
      const row = injected.get(key);
      if (row) row.value++;
      else injected.set(key, { attributes: { [A.policy]: e.source, [A.chaosKind]: kind }, value: 1 });
    },
  };
  const toxic = (e: EventOf<'chaos.toxic'>) => {
    const source = String(e.source);
    const byType = active.get(source) ?? new Map<string, Set<unknown>>();
    active.set(source, byType);
    const type = hiddenName(e.toxic);
    const names = byType.get(type) ?? new Set();
    byType.set(type, names);
    if (e.active) names.add(e.name);
    else names.delete(e.name);
  };
  const observe = (result: BatchObservableResult, injections: Observable, toxics: Observable) => {
    for (const row of injected.values()) result.observe(injections, row.value, row.attributes);
    // Summed per label: `_other` stands for many proxies.
    const rows = new Map<string, { attributes: Attributes; value: number }>();
    for (const [source, byType] of active) {
      const proxy = proxies.label(source);
      for (const [type, names] of byType) {
        const key = JSON.stringify([proxy, type]);
        const row = rows.get(key);
        if (row !== undefined && proxy === OTHER_POLICY) row.value += names.size;
        else rows.set(key, { attributes: { [A.policy]: proxy, [A.chaosToxic]: type }, value: names.size });
        if (names.size === 0) byType.delete(type);
      }
      if (byType.size > 0) continue;
      active.delete(source);
      proxies.forget(source);
    }
    for (const row of rows.values()) result.observe(toxics, row.value, row.attributes);
  };
  const attach = (meter: Meter) => {
    const injections = meter.createObservableCounter(M.chaosInjections, {
      unit: '{injection}',
      description: 'Faults injected into calls on purpose by @holdfast/chaos, by kind.',
    });
    const toxics = meter.createObservableUpDownCounter(M.chaosToxicsActive, {
      unit: '{toxic}',
      description: 'Fault proxy toxics on now, by proxy and toxic type.',
    });
    return observing(meter, [injections, toxics], (result) => observe(result, injections, toxics));
  };
  return { handlers, toxic, attach };
}
