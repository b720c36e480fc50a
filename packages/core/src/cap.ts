import { hideSecrets } from './redact.js';
import type { PolicyRegistry, PolicySnapshot } from './registry.js';
import type { JsonValue } from './snapshot.js';

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
    return this.place(name) ? name : OTHER_POLICY;
  }

  /** Whether `name` has a place under the cap (taking one if there is room). */
  place(name: string): boolean {
    if (this.#live.has(name)) return true;
    if (this.#live.size < this.max) {
      this.#live.add(name);
      return true;
    }
    if (!this.#warned) {
      this.#warned = true;
      process.emitWarning(
        `${this.what}: more than ${this.max} policy names at once (maxPolicies); the others are reported as policy "${OTHER_POLICY}"`,
        { type: 'HoldfastWarning', code: 'HOLDFAST_METRICS_CARDINALITY' },
      );
    }
    return false;
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

/** What may hold a credential: a URL, `user:password@`, `key=value`, `key: value`, an HTTP authentication scheme's token. */
const maybeSecret = /[:=@]|bearer|basic|negotiate|ntlm/i;
/** Values hidden so far: a policy or endpoint name is one of few, and the hot path pays one lookup. */
const hidden = new Map<string, string>();
/** Longer values are hidden each time: a thousand of them (error codes that are messages) must not hold megabytes. */
const MAX_CACHED_LENGTH = 256;

/**
 * A name or label value without the credentials it may carry, as the dashboard shows it
 * (hideSecrets): a user's own policy named by its URL (`https://u:pw@host`, `?api_key=`), or a
 * snapshot registered under one. Our own policies hide their names already; theirs reach
 * exporters as given.
 */
export function hiddenName(value: string): string {
  if (!maybeSecret.test(value)) return value;
  let shown = hidden.get(value);
  if (shown === undefined) {
    shown = hideSecrets(value);
    // Shown already, `#2` apart from another hidden alike (an anomaly watch's key): hiding it again
    // ate the `#2` of a query value (`?api_key=***#2`), and merged the two.
    const apart = /^(.*\*\*\*.*)#\d+$/s.exec(value)?.[1];
    if (shown !== value && apart !== undefined && hideSecrets(apart) === apart) shown = value;
    // A bound, not an LRU: values past it are hidden again, which costs time, never memory.
    if (value.length > MAX_CACHED_LENGTH) return shown;
    if (hidden.size >= 1_000) hidden.clear();
    hidden.set(value, shown);
  }
  return shown;
}

/**
 * What `work` makes of each text, kept from one pass over a registry's texts to the next (a
 * snapshot build, a health report): the same names come back every pass, and each is worked out
 * once. Only what the last pass looked up is kept, so it holds what the registry holds however
 * many (a fixed bound cleared whole hid 10,000 names again on every pass), and a name gone is
 * forgotten a pass later.
 */
export class PassMemo {
  #last = new Map<string, string>();
  #next: Map<string, string> | undefined;

  constructor(
    /** What a text becomes (hidden): the work the memo saves between passes. */
    readonly work: (text: string) => string,
  ) {}

  /** Runs `pass`; what it looks up is what the next pass finds. */
  pass<T>(pass: () => T): T {
    const next = new Map<string, string>();
    this.#next = next;
    try {
      const out = pass();
      this.#last = next;
      return out;
    } finally {
      this.#next = undefined;
    }
  }

  /** What `work` makes of `text`; outside a pass (an event between two) nothing is kept. */
  get(text: string): string {
    const out = this.#next?.get(text) ?? this.#last.get(text) ?? this.work(text);
    // Long texts (a message) are worked out each time: kept, they would hold megabytes. A name
    // that is no string (plain JavaScript, a user's registry) is passed on as work() makes it.
    if (this.#next !== undefined && typeof text === 'string' && text.length <= MAX_CACHED_LENGTH)
      this.#next.set(text, out);
    return out;
  }
}

/**
 * Policy names as one exporter's labels show them (@holdfast/prometheus and @holdfast/otel share
 * it): hidden (see hiddenName), and two that hide alike (one breaker per tenant, named by a URL
 * that differs in its API key) kept apart as `#2`, `#3`..., as the anomaly watch shows such keys.
 * Merged, an open breaker's state was summed with a closed one's, and one leaving took the
 * other's series along. A name keeps what it shows until it is forgotten (it left the registry).
 */
export class ShownNames {
  readonly #shown = new Map<string, string>();
  // `_other` is the overflow's (see PolicyNames): a user's policy of that name shows as `_other#2`.
  readonly #taken = new Set<string>([OTHER_POLICY]);

  /** What `name` shows: hidden, with `#2`, `#3`... when another name shows alike. */
  get(name: string): string {
    let shown = this.#shown.get(name);
    if (shown !== undefined) return shown;
    const hidden = hiddenName(name);
    // Every hidden value has a `***`: a name without one shows as itself, and none other alike.
    // One with it (`https://***@db/`, ours, hidden already) takes its place like a hidden one:
    // left out, a password's `https://u:pw@db/` showed alike and the two merged. So does one
    // spelled like the overflow or a user's `_other` shown apart (`_other#2`).
    if (hidden === name && !name.includes('***') && name !== OTHER_POLICY && !name.startsWith(`${OTHER_POLICY}#`)) {
      return name;
    }
    shown = hidden;
    for (let n = 1; this.#taken.has(shown); ) shown = `${hidden}#${++n}`;
    this.#taken.add(shown);
    this.#shown.set(name, shown);
    return shown;
  }

  /** Frees what `name` showed (its policy left the registry), for another name to show. */
  forget(name: string): void {
    const shown = this.#shown.get(name);
    if (shown === undefined) return;
    this.#shown.delete(name);
    this.#taken.delete(shown);
  }
}

/**
 * Policy names as an exporter's labels and attributes show them (@holdfast/prometheus and
 * @holdfast/otel share it): capped (see PolicyNames: past the cap, `_other`), then hidden and kept
 * apart (see ShownNames: a user's own policy named `_other` shows as `_other#2`, never as the
 * overflow). Each name with a place is worked out once, and held as long as its place.
 */
export class PolicyLabels {
  readonly #names: PolicyNames;
  readonly #shown = new ShownNames();
  readonly #labels = new Map<string, string>();

  /** At most `max` names at once; `what` names who caps, for the one warning past the cap. */
  constructor(max: number, what: string) {
    this.#names = new PolicyNames(max, what);
  }

  /** The label for `given`: what it shows while it has a place, else `_other`. */
  label(given: string): string {
    // A name that is no string (a URL object) is its text: one place per name, not per object.
    const name = String(given);
    let shown = this.#labels.get(name);
    if (shown === undefined) {
      // Not its label: a user's `_other` has a place and shows apart from the overflow.
      if (!this.#names.place(name)) return OTHER_POLICY;
      shown = this.#shown.get(name);
      this.#labels.set(name, shown);
    }
    return shown;
  }

  /** The label `name` has now, if it has one: nothing is placed (see label()). */
  peek(name: string): string | undefined {
    return this.#labels.get(String(name));
  }

  /** Frees `name`'s place (its policy left): the label it had, whose series go, or undefined if none. */
  forget(name: string): string | undefined {
    if (!this.#names.forget(name)) return undefined;
    const shown = this.#shown.get(name);
    this.#shown.forget(name);
    this.#labels.delete(name);
    return shown;
  }
}

/**
 * `policies` as an exporter's gauges read it: each snapshot made plain JSON first, so one whose reading
 * throws (a user's own snapshot with a getter on a pool closed meanwhile) is read as one whose
 * snapshot() threw (null, its error's name), not a throw out of the scrape, which left every
 * metric unserved.
 */
export function plainPolicies(policies: PolicyRegistry): PolicyRegistry {
  return {
    register: (kind, name, source) => policies.register(kind, name, source),
    // A registry of an older copy may have none: nothing to be told then.
    onUnregister: (listener, options) =>
      typeof policies.onUnregister === 'function' ? policies.onUnregister(listener, options) : () => {},
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
