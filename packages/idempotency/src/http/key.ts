/** What the `Idempotency-Key` header of a request says. */
export type KeyHeader =
  | { readonly status: 'ok'; readonly key: string }
  | { readonly status: 'missing' }
  | { readonly status: 'invalid'; readonly reason: string };

const MAX_KEY_LENGTH = 255;
const MISSING: KeyHeader = { status: 'missing' };

/**
 * Reads an `Idempotency-Key` field value: a structured-field string (`"abc"`, RFC 8941) or a bare
 * token (`abc`), which name the same key. A key is 1-255 printable ASCII characters; a bare one
 * has no spaces, quotes or commas, so a header sent twice and joined into one line (by Node with
 * ", ", by a proxy with ",", RFC 9110 5.3) is refused, even when one copy is empty. A comma is
 * only part of a key inside a quoted string. Pass the copies themselves (`req.headersDistinct`)
 * when you have them: more than one copy is refused.
 */
export function parseKeyHeader(value: string | readonly string[] | undefined): KeyHeader {
  if (value === undefined) return MISSING;
  if (typeof value !== 'string') {
    return value.length === 1 ? parseKeyHeader(value[0]) : invalid('send the header exactly once');
  }
  // Trimmed only when it starts or ends with a character `trim()` removes (none of them is a
  // printable ASCII character but the space): a key as sent is read as it is.
  const field =
    value.length > 0 && isPrintable(value.charCodeAt(0)) && isPrintable(value.charCodeAt(value.length - 1))
      ? value
      : value.trim();
  if (field === '') return invalid('the key is empty');
  const bare = field.charCodeAt(0) !== 0x22;
  const key = bare ? field : unquote(field);
  if (typeof key !== 'string') return key;
  if (key.length === 0) return invalid('the key is empty');
  if (key.length > MAX_KEY_LENGTH) return invalid(`the key is ${key.length} characters long; at most 255 are allowed`);
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return invalid('a key is made of printable ASCII characters only');
    if (bare && (c === 0x20 || c === 0x22 || c === 0x2c)) {
      return invalid(
        c === 0x2c
          ? 'a bare key has no commas: the header was sent more than once, or send a quoted string ("...")'
          : 'a bare key has no spaces or quotes; send a quoted string ("...") for those',
      );
    }
  }
  return { status: 'ok', key };
}

/** Decodes an sf-string: `"` chars `"`, where `\"` and `\\` are the only escapes. */
function unquote(field: string): string | KeyHeader {
  let out = '';
  for (let i = 1; i < field.length; i++) {
    const c = field[i];
    if (c === '\\') {
      const next = field[++i];
      if (next !== '"' && next !== '\\') return invalid('only \\" and \\\\ may be escaped in a quoted key');
      out += next;
    } else if (c === '"') {
      return i === field.length - 1 ? out : invalid('nothing may follow the closing quote');
    } else {
      out += c;
    }
  }
  return invalid('the quoted key has no closing quote');
}

/** Printable ASCII but the space: never removed by `trim()`. */
function isPrintable(c: number): boolean {
  return c > 0x20 && c < 0x7f;
}

function invalid(reason: string): KeyHeader {
  return { status: 'invalid', reason };
}
