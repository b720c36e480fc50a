import { hideSecrets } from '@holdfast/core';

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

/** What may hold a credential: a URL, `user:password@`, `key=value`, `key: value`, a bearer token. */
const maybeSecret = /[:=@]|bearer/i;
/** Values hidden so far: a label value is one of few, and the hot path pays one lookup. */
const hidden = new Map<string, string>();

/**
 * A label value without the credentials it may carry, as the dashboard shows it (core's
 * hideSecrets): a user's own policy named by its URL (`https://u:pw@host`, `?api_key=`), or a
 * snapshot registered under one. Our own policies hide their names already; theirs reach us as given.
 */
export function hiddenLabel(value: string): string {
  if (!maybeSecret.test(value)) return value;
  let shown = hidden.get(value);
  if (shown === undefined) {
    shown = hideSecrets(value);
    // Shown already, `#2` apart from another hidden alike (an anomaly watch's key): hiding it again
    // ate the `#2` of a query value (`?api_key=***#2`), and merged the two.
    const apart = /^(.*\*\*\*.*)#\d+$/s.exec(value)?.[1];
    if (shown !== value && apart !== undefined && hideSecrets(apart) === apart) shown = value;
    // A bound, not an LRU: values past it are hidden again, which costs time, never memory.
    if (hidden.size >= 1_000) hidden.clear();
    hidden.set(value, shown);
  }
  return shown;
}

/**
 * Policy names as one collector's labels show them: hidden (see hiddenLabel), and two that hide
 * alike (one breaker per tenant, named by a URL that differs in its API key) kept apart as `#2`,
 * `#3`..., as the anomaly watch shows such keys. Merged, an open breaker's state was summed with a
 * closed one's, and one leaving took the other's series along. A name keeps its label until it
 * is forgotten (it left the registry).
 */
export class ShownNames {
  readonly #shown = new Map<string, string>();
  readonly #taken = new Set<string>();

  get(name: string): string {
    const hidden = hiddenLabel(name);
    if (hidden === name) return name;
    let shown = this.#shown.get(name);
    if (shown === undefined) {
      shown = hidden;
      for (let n = 1; this.#taken.has(shown); ) shown = `${hidden}#${++n}`;
      this.#taken.add(shown);
      this.#shown.set(name, shown);
    }
    return shown;
  }

  forget(name: string): void {
    const shown = this.#shown.get(name);
    if (shown === undefined) return;
    this.#shown.delete(name);
    this.#taken.delete(shown);
  }
}
