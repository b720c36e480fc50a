import { hideSecrets } from '@holdfast/core';

/** What may hold a credential: a URL, `user:password@`, `key=value`, `key: value`, a bearer token. */
const maybeSecret = /[:=@]|bearer/i;
/** Values hidden so far: a policy or endpoint name is one of few, and the hot path pays one lookup. */
const hidden = new Map<string, string>();

/**
 * A name without the credentials it may carry, as the dashboard shows it (core's hideSecrets): a
 * user's own policy named by its URL (`https://u:pw@host`, `?api_key=`), or a snapshot registered
 * under one. Our own policies hide their names already; theirs reach us as given.
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
    if (hidden.size >= 1_000) hidden.clear();
    hidden.set(value, shown);
  }
  return shown;
}

/**
 * `event` with each string field hidden (see hiddenName) but `keep`, one already shown as it
 * should be: the event itself when none changes.
 */
export function hiddenEvent<E extends object>(event: E, keep?: string): E {
  const fields = event as Record<string, unknown>;
  let copy: Record<string, unknown> | undefined;
  for (const field in fields) {
    const value = fields[field];
    if (typeof value !== 'string' || field === keep) continue;
    const shown = hiddenName(value);
    if (shown !== value) (copy ??= { ...fields })[field] = shown;
  }
  return (copy ?? event) as E;
}

/**
 * Policy names as one instrument()'s attributes show them: hidden (see hiddenName), and two that
 * hide alike (one breaker per tenant, named by a URL that differs in its API key) kept apart as
 * `#2`, `#3`..., as the anomaly watch shows such keys. Merged, an open breaker's state was summed
 * with a closed one's, and one leaving took the other's counts along. A name keeps what it shows
 * until it is forgotten (it left the registry).
 */
export class ShownNames {
  readonly #shown = new Map<string, string>();
  readonly #taken = new Set<string>();

  get(name: string): string {
    const hidden = hiddenName(name);
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
