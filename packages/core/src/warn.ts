import { hideSecrets } from './redact.js';

/**
 * What a message says of a thrown value, whatever it is: its message, or its String(). It never
 * throws: a getter that throws, a Proxy, an object with no toString read as a placeholder.
 */
export function messageOf(error: unknown): string {
  try {
    return error instanceof Error ? String(error.message) : String(error);
  } catch {
    return 'an error that cannot be read';
  }
}

/**
 * Tells a bug in something the user gave (a listener, a predicate, a callback, a bus) as a
 * process warning, once per `key` in `told`: `text`, then what `error` says ({@link messageOf}),
 * without the credentials either may hold (hideSecrets).
 * It never throws, so the call it reports on goes on.
 *
 * @example
 * const told = new WeakSet<object>();
 * warnOnce(told, predicate, 'HOLDFAST_PREDICATE_ERROR', `${name}: isFailure threw`, error);
 */
export function warnOnce<K>(
  told: { has(key: K): boolean; add(key: K): unknown },
  key: K,
  code: string,
  text: string,
  error: unknown,
): void {
  if (told.has(key)) return;
  told.add(key);
  // Warnings reach the logs: a name or a message may be a URL with its password in it.
  process.emitWarning(hideSecrets(`${text}: ${messageOf(error)}`), { type: 'HoldfastWarning', code });
}
