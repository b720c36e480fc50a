import { defaultSecretParams, hideCredentials } from '@holdfast/core';

const secretParam = new RegExp(`([?&;](?:${defaultSecretParams.join('|')})=)[^&#\\s]*`, 'gi');
const schemeChar = /[a-z\d+.-]/i;

/**
 * A key as events, snapshots, errors and metrics show it: each URL in it (a DSN, an endpoint)
 * without its credentials and the values of its secret query parameters, and what core's
 * `hideCredentials` finds (`password=`, `token: x`, a leading `user:password@`). Text in, text out
 * (no URL parser normalises it), so a shown key shows as itself.
 */
export function shownKey(key: string): string {
  const starts: number[] = [];
  for (let i = key.indexOf('://'); i !== -1; i = key.indexOf('://', i + 3)) {
    let start = i;
    while (start > 0 && schemeChar.test(key[start - 1] as string)) start--;
    starts.push(start);
  }
  if (starts.length === 0) return hideCredentials(key);
  let out = key.slice(0, starts[0]);
  starts.forEach((start, i) => {
    out += url(key.slice(start, starts[i + 1]));
  });
  return hideCredentials(out);
}

/** One URL and what follows it up to the next: its user info up to the last `@` (for a web URL, in its authority). */
function url(text: string): string {
  const from = text.indexOf('://') + 3;
  // A password may hold an unencoded `/` (or `?`, `#`) in a DSN; a web URL's path may hold an `@` (npm's /@scope).
  // A web URL the parser refuses (such a password makes its port bad) is read as a DSN: up to its last `@`.
  const web = /^(?:https?|wss?):/i.test(text) && URL.canParse(text);
  const authority = web ? text.slice(from).search(/[/?#\\]/) : -1;
  const end = authority === -1 ? text.length : from + authority;
  const at = text.lastIndexOf('@', end - 1);
  const redacted = at >= from ? `${text.slice(0, from)}***${text.slice(at)}` : text;
  return redacted.replace(secretParam, '$1***');
}
