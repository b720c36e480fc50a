import { Redactor } from '@holdfast/core';

const redactor = new Redactor();
/** A connection string's password (`password=...`, `Pwd='...'`), as the breaker registry hides it. */
const keywordPassword = /\b(pass(?:word|wd)?|pwd)(\s*=\s*)('[^']*'?|"[^"]*"?|[^\s;,&]*)/gi;

/**
 * Text as the watch's events, snapshots and warnings show it: each URL in it (a DSN, an endpoint)
 * without its credentials and secret query parameters, a connection string's `password=`, and a
 * leading `user:password@`. A key the breaker registry already showed so shows as itself.
 */
export function shown(text: string): string {
  const hidden = text.includes('://') ? redactor.text(text) : text.replace(/^[^\s:/@]+:\S*@/, '***@');
  return hidden.replace(keywordPassword, '$1$2***');
}
