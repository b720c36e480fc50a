/** The policy label value every name past the cap shares. */
export const OTHER_POLICY = '_other';

/**
 * Policy names as metric labels, for exporters (@holdfast/prometheus and @holdfast/otel share
 * it): at most `max` at once, the rest share `_other`. A name leaves when its policy leaves the
 * registry (disposed, or evicted from a breakerRegistry), so per-host breakers cost series for
 * the hosts held now, not for every host ever seen.
 */
export class PolicyNames {
  readonly #live = new Set<string>();
  #warned = false;

  constructor(
    /** How many names may be labels at once. */
    readonly max: number,
    /** Who caps (e.g. `@holdfast/prometheus`), for the one warning past the cap. */
    readonly what: string,
  ) {}

  /** The label for `name`: itself while it fits under the cap, else `_other`. */
  label(name: string): string {
    if (this.#live.has(name)) return name;
    if (this.#live.size < this.max) {
      this.#live.add(name);
      return name;
    }
    if (!this.#warned) {
      this.#warned = true;
      process.emitWarning(
        `${this.what}: more than ${this.max} policy names at once (maxPolicies); the others are reported as policy "${OTHER_POLICY}"`,
        { type: 'HoldfastWarning', code: 'HOLDFAST_METRICS_CARDINALITY' },
      );
    }
    return OTHER_POLICY;
  }

  /** Frees `name`'s place; true when it had one (and so may have series to drop). */
  forget(name: string): boolean {
    return this.#live.delete(name);
  }
}

/** `event` with its source as `label` says: the event itself unless the name is past the cap. */
export function labelled<
  E extends {
    /** The policy's name. */
    readonly source: string;
  },
>(event: E, label: (name: string) => string): E {
  const source = label(event.source);
  if (source === event.source) return event;
  // A copy whose one changed property it had already: V8 (Node 20) is slow to add to a spread copy.
  const copy: { source: string } = { ...event };
  copy.source = source;
  return copy as E;
}
