import { hiddenName } from '@holdfast/core';

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
