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
