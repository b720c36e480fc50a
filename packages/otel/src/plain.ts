import type { JsonValue, PolicyRegistry, PolicySnapshot } from '@holdfast/core';

/**
 * `policies` as the gauges read it: each snapshot made plain JSON first, so one whose reading
 * throws (a user's own snapshot with a getter on a pool closed meanwhile) is read as one whose
 * snapshot() threw (null, its error's name), not a throw out of the scrape, which left every
 * metric unserved.
 */
export function plainPolicies(policies: PolicyRegistry): PolicyRegistry {
  return {
    register: (kind, name, source) => policies.register(kind, name, source),
    // A registry of an older copy may have none: nothing to be told then.
    onUnregister: (listener) =>
      typeof policies.onUnregister === 'function' ? policies.onUnregister(listener) : () => {},
    get size() {
      return policies.size;
    },
    snapshots: (kind) => policies.snapshots(kind).map(plain),
  };
}

function plain(entry: PolicySnapshot): PolicySnapshot {
  try {
    const text = JSON.stringify(entry.snapshot);
    return { ...entry, snapshot: text === undefined ? null : (JSON.parse(text) as JsonValue) };
  } catch (error) {
    const name = error instanceof Error && /^\w{1,64}$/.test(error.name) ? error.name : 'Error';
    return { kind: entry.kind, name: entry.name, snapshot: null, error: name };
  }
}
