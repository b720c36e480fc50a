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
    // A bound, not an LRU: values past it are hidden again, which costs time, never memory.
    if (hidden.size >= 1_000) hidden.clear();
    hidden.set(value, shown);
  }
  return shown;
}

/** `event` with each string field hidden (see hiddenName): the event itself when none changes. */
export function hiddenEvent<E extends object>(event: E): E {
  const fields = event as Record<string, unknown>;
  let copy: Record<string, unknown> | undefined;
  for (const field in fields) {
    const value = fields[field];
    if (typeof value !== 'string') continue;
    const shown = hiddenName(value);
    if (shown !== value) (copy ??= { ...fields })[field] = shown;
  }
  return (copy ?? event) as E;
}
