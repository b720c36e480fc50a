import { hiddenName } from '@holdfast/core';

/** A lone surrogate, and a backslash run before one or before text spelled like its escape. */
const escapes =
  /(\\+)(?=u[dD][89a-fA-F][0-9a-fA-F]{2}|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|[\uDC00-\uDFFF])|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * A label value as Prometheus receives it: UTF-8, which has no lone UTF-16 surrogate (encoding one
 * gives U+FFFD, so `a\uD800` and `a\uDC00` would be two series with one label on the wire). Each
 * lone surrogate is spelled `\ud800`, as JSON shows it, and each backslash run before one or before
 * such a spelling is doubled, so two names never share a label. Other values are left as they are.
 */
export function wireLabel(value: string): string {
  if (!/[\uD800-\uDFFF\\]/.test(value)) return value;
  return value.replace(escapes, (match, backslashes?: string) =>
    backslashes === undefined ? `\\u${match.charCodeAt(0).toString(16)}` : backslashes + backslashes,
  );
}

/**
 * One key for a list of label values, exact as prom-client tells series apart: each is
 * length-prefixed, so `a`, `b\0c` and `a\0b`, `c` (one key when joined with `\0`) stay two, and
 * undefined (no label: prom-client leaves it out) is `-`, apart from the text "undefined". Other
 * values as prom-client writes them (1 and '1' are one series to it).
 */
export function keyOf(values: readonly unknown[]): string {
  let key = '';
  for (const value of values) {
    const text = String(value);
    key += value === undefined ? '-' : `${text.length}:${text}`;
  }
  return key;
}

/** A label set: label name -> value. */
export type Labels<L extends string> = Partial<Record<L, string | number>>;

/** Values kept ready for the wire: past this many the cache starts over (time, never memory). */
const MAX_VALUES = 1_000;
/** Longer values are worked out each time: a thousand of them must not hold megabytes. */
const MAX_CACHED_LENGTH = 256;
/** Labels whose values are policy labels already (see PolicyLabels): hidden, and apart. */
const shownAlready = new Set(['policy', 'proxy']);

/**
 * Label sets as they go on the wire (see wireLabel), without the credentials their values may
 * carry (see hiddenName; a `policy` or `proxy` is shown by PolicyLabels already), each distinct
 * value worked out once: a label value is one of few, and the hot path pays a lookup per label.
 * Policy values are held as long as their place under maxPolicies (`forget` frees it); the others
 * up to MAX_VALUES short ones.
 */
export function wiring(): {
  labels<L extends string>(labels: Labels<L>): Labels<L>;
  forget(policy: string): void;
} {
  const values = new Map<string, string>();
  const policies = new Map<string, string>();
  return {
    labels<L extends string>(labels: Labels<L>): Labels<L> {
      let out: Labels<L> | undefined;
      for (const k in labels) {
        const given = labels[k];
        if (given === undefined || typeof given === 'number') continue;
        // What prom-client would write of another (a URL object: its password in it), hidden too.
        const v = String(given);
        const policy = shownAlready.has(k);
        const cache = policy ? policies : values;
        let w = cache.get(v);
        if (w === undefined) {
          w = wireLabel(policy ? v : hiddenName(v));
          if (values.size >= MAX_VALUES) values.clear();
          // A policy's is held while it has its place; another only if short.
          if (policy || v.length <= MAX_CACHED_LENGTH) cache.set(v, w);
        }
        if (w !== given) (out ??= { ...labels })[k] = w;
      }
      return out ?? labels;
    },
    forget: (name) => void policies.delete(name),
  };
}
