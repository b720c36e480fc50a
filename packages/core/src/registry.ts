import { hideSecrets } from './redact.js';
import type { JsonValue } from './snapshot.js';

/**
 * What a registered policy is. `healthReport()`, the dashboard and the metrics packages read
 * the snapshots of these three kinds; any other kind is listed and served as it is.
 */
export type SnapshotKind = 'breaker' | 'failover' | 'budget' | (string & {});

/** Anything that reports its state as plain JSON: a breaker, a failover set, a budget. */
export interface SnapshotSource {
  /** The current state, as plain JSON. */
  snapshot(): JsonValue;
}

/** One live policy's state, as {@link PolicyRegistry.snapshots} lists it. */
export interface PolicySnapshot {
  /** What the policy is: `breaker`, `failover`, `budget`, or a kind of your own. */
  readonly kind: SnapshotKind;
  /** The name it was registered under. */
  readonly name: string;
  /** What `snapshot()` returned, or null when it threw. */
  readonly snapshot: JsonValue;
  /**
   * What `snapshot()` threw, if it did: the error's `code`, else its `name` (`ECONNREFUSED`,
   * `TypeError`). Never its message, which may name a URL with a password in it. A `snapshot()`
   * that returned a promise (an `async` one) is an error too: `snapshot() must be synchronous: it
   * returned a promise`.
   */
  readonly error?: string;
}

/** Takes a policy off the registry. Calling it twice is harmless. */
export type Unregister = () => void;

/**
 * The live stateful policies of a process, held weakly: registering never keeps a policy
 * alive, and one that is garbage-collected leaves the list on its own.
 */
export interface PolicyRegistry {
  /**
   * Lists `source` under `kind` and `name` until the returned function is called (a policy
   * calls it from `dispose()`) or `source` is collected. Pass the policy itself, not a wrapper
   * made for the call: a wrapper nobody else holds is collected, and leaves the list, at once.
   */
  register(kind: SnapshotKind, name: string, source: SnapshotSource): Unregister;
  /** The snapshot of every live policy (of `kind`, if given), in registration order. */
  snapshots(kind?: SnapshotKind): PolicySnapshot[];
  /** How many policies are registered and not yet collected. */
  readonly size: number;
  /**
   * Calls `listener` when the last policy registered under a name leaves (disposed, evicted
   * from a `breakerRegistry`, or collected), so metrics can drop that name's series. With
   * `{ perKind: true }`, when the last of its kind under that name leaves: a breaker disposed while
   * a failover set of its name stays is told then, not when the set goes too.
   */
  onUnregister(
    listener: (kind: SnapshotKind, name: string) => void,
    options?: { readonly perKind?: boolean },
  ): Unregister;
}

type UnregisterListener = (kind: SnapshotKind, name: string) => void;

interface Entry {
  readonly kind: SnapshotKind;
  readonly name: string;
  readonly ref: WeakRef<SnapshotSource>;
}

class WeakPolicyRegistry implements PolicyRegistry {
  readonly #entries = new Set<Entry>();
  /** Live entries per name: a name leaves when its count does. */
  readonly #names = new Map<string, number>();
  /** Live entries per kind and name: a name leaves its kind when its count does. */
  readonly #ofKind = new Map<SnapshotKind, Map<string, number>>();
  #listeners: readonly { readonly listener: UnregisterListener; readonly perKind: boolean }[] = [];
  // Drops the entry of a policy that was collected without being disposed.
  readonly #finalizer = new FinalizationRegistry<Entry>((entry) => this.#drop(entry));

  register(kind: SnapshotKind, name: string, source: SnapshotSource): Unregister {
    if (typeof source?.snapshot !== 'function') {
      // A policy named by its URL (a DSN, `?api_key=`): its password stays out of the message.
      const shown = (text: unknown) => (typeof text === 'string' ? hideSecrets(text) : String(text));
      throw new TypeError(`registerSnapshot("${shown(kind)}", "${shown(name)}"): source must have a snapshot() method`);
    }
    const entry: Entry = { kind, name, ref: new WeakRef(source) };
    this.#entries.add(entry);
    this.#names.set(name, (this.#names.get(name) ?? 0) + 1);
    let ofKind = this.#ofKind.get(kind);
    if (ofKind === undefined) this.#ofKind.set(kind, (ofKind = new Map()));
    ofKind.set(name, (ofKind.get(name) ?? 0) + 1);
    this.#finalizer.register(source, entry, entry);
    return () => {
      if (this.#drop(entry)) this.#finalizer.unregister(entry);
    };
  }

  onUnregister(listener: UnregisterListener, options?: { readonly perKind?: boolean }): Unregister {
    const told = { listener, perKind: options?.perKind === true };
    this.#listeners = [...this.#listeners, told];
    return () => {
      this.#listeners = this.#listeners.filter((l) => l !== told);
    };
  }

  /** Takes `entry` off the list; tells the listeners when it was the last of its name, or of its kind and name. */
  #drop(entry: Entry): boolean {
    if (!this.#entries.delete(entry)) return false;
    const { kind, name } = entry;
    const ofKind = this.#ofKind.get(kind);
    const kindLeft = leave(ofKind, name);
    if (ofKind?.size === 0) this.#ofKind.delete(kind);
    const nameLeft = leave(this.#names, name);
    for (const { listener, perKind } of this.#listeners) {
      if (!(perKind ? kindLeft : nameLeft)) continue;
      try {
        listener(kind, name);
      } catch {
        // A metrics exporter's bug must not break the dispose() that got here.
      }
    }
    return true;
  }

  snapshots(kind?: SnapshotKind): PolicySnapshot[] {
    const out: PolicySnapshot[] = [];
    for (const entry of this.#entries) {
      if (kind !== undefined && entry.kind !== kind) continue;
      const source = entry.ref.deref();
      if (source === undefined) {
        this.#drop(entry);
        continue;
      }
      out.push(read(entry, source));
    }
    return out;
  }

  get size(): number {
    let live = 0;
    for (const entry of this.#entries) if (entry.ref.deref() !== undefined) live++;
    return live;
  }
}

/** Counts one `key` out of `counts`; true when it was the last. */
function leave(counts: Map<string, number> | undefined, key: string): boolean {
  const left = (counts?.get(key) ?? 1) - 1;
  if (left > 0) counts?.set(key, left);
  else counts?.delete(key);
  return left <= 0;
}

/** The error of a snapshot() that returned a promise: what it resolves to comes too late for any reader. */
const ASYNC_SNAPSHOT = 'snapshot() must be synchronous: it returned a promise';

function read(entry: Entry, source: SnapshotSource): PolicySnapshot {
  try {
    const snapshot: unknown = source.snapshot();
    const then = (snapshot as { then?: unknown } | null)?.then;
    if (typeof then !== 'function') return { kind: entry.kind, name: entry.name, snapshot: snapshot as JsonValue };
    // A native promise's rejection is handled here: unhandled, it crashed the process (its message,
    // password and all, on stderr). Any other thenable is left alone: a lazy query (Prisma, Knex)
    // runs only when then() is called, and would run on every read.
    if (snapshot instanceof Promise) snapshot.catch(() => {});
    return { kind: entry.kind, name: entry.name, snapshot: null, error: ASYNC_SNAPSHOT };
  } catch (error) {
    // One broken policy must not hide the others from /health or the dashboard.
    return { kind: entry.kind, name: entry.name, snapshot: null, error: snapshotErrorLabel(error) };
  }
}

/**
 * What a snapshot's error is, without what it says: its `code`, else its `name`, if either is a
 * short word. A message may carry a connection URL with its password, and /health is served to anyone.
 */
export function snapshotErrorLabel(error: unknown): string {
  if (typeof error !== 'object' || error === null) return typeof error;
  try {
    const { code, name } = error as { code?: unknown; name?: unknown };
    for (const word of [code, name]) if (typeof word === 'string' && /^[\w.:-]{1,64}$/.test(word)) return word;
  } catch {
    // An error whose reads throw too (a Proxy): no word to give.
  }
  return 'Error';
}

/** Makes a registry of its own, e.g. one per test. */
export function createPolicyRegistry(): PolicyRegistry {
  return new WeakPolicyRegistry();
}

const registryKey = Symbol.for('@holdfast/core/policies@0');

/** The process-wide registry, shared (like the bus) by every copy of @holdfast/core of this major. */
export const policies: PolicyRegistry = globalRegistry();

function globalRegistry(): PolicyRegistry {
  const g = globalThis as Record<symbol, unknown>;
  const existing = g[registryKey] as PolicyRegistry | undefined;
  if (typeof existing?.register === 'function' && typeof existing.snapshots === 'function') return existing;
  const made = createPolicyRegistry();
  Object.defineProperty(g, registryKey, { value: made, enumerable: false, configurable: false, writable: false });
  return made;
}

/**
 * Lists a stateful policy on the process-wide registry, for `healthReport()`, the dashboard and
 * the metrics packages. Call the returned function from the policy's `dispose()`.
 *
 * @example
 * this.#unregister = registerSnapshot('breaker', this.name, this);
 */
export function registerSnapshot(kind: SnapshotKind, name: string, source: SnapshotSource): Unregister {
  return policies.register(kind, name, source);
}

/** The snapshot of every live registered policy (of `kind`, if given). */
export function snapshots(kind?: SnapshotKind): PolicySnapshot[] {
  return policies.snapshots(kind);
}
