import * as crypto from 'node:crypto';

// One-shot SHA-256 (Node 20.12+): no Hash object per request. Older Nodes stream into createHash.
const oneShot = (crypto as { hash?: (algorithm: string, data: Buffer | string, encoding: 'base64url') => string }).hash;

/** The parts of a request that must match for a retry to replay. */
export interface RequestShape {
  readonly method: string;
  /** Path and query, as the client sent them. */
  readonly url: string;
  /** The `content-type` header, if any. */
  readonly contentType: string | undefined;
  /**
   * The `content-encoding` header, if any: the same bytes sent gzip-encoded and not are two
   * different payloads.
   */
  readonly contentEncoding?: string | undefined;
  /**
   * The body's bytes as they came on the wire (a Buffer or Uint8Array; a string is taken as its
   * UTF-8 bytes), undefined for none, or, when a body parser consumed them, the parsed value.
   */
  readonly body: unknown;
  /** Values of the headers named in the `fingerprint` option, in that order. */
  readonly headers: readonly (string | readonly string[] | undefined)[];
}

/**
 * SHA-256 of method, URL, content type, content encoding, the selected headers and the body,
 * base64url. The body is hashed as the bytes the client sent, whatever its content type; an
 * empty body is no body (`Content-Length: 0` and a chunked body of zero bytes are one request).
 * Only a body that a parser already consumed (its bytes gone) is hashed as its parsed value, in
 * a canonical form.
 */
export function requestFingerprint(shape: RequestShape): string {
  return fingerprintOf(shape.method, shape.url, shape.contentType, shape.contentEncoding, shape.body, shape.headers);
}

/** {@link requestFingerprint} of a shape's fields: the middleware's call, without a shape object per request. */
export function fingerprintOf(
  anyMethod: string,
  url: string,
  contentType: string | undefined,
  contentEncoding: string | undefined,
  body: unknown,
  headers: RequestShape['headers'],
): string {
  // One canonical string of length-prefixed fields, then the body: two hash updates, not twenty.
  const method = anyMethod.toUpperCase();
  let type = contentType ?? '';
  // A multipart body is hashed without its boundary, which a client draws afresh for every send
  // (fetch's FormData, browsers, curl): the same upload retried is the same request.
  // (Parsed by an upload parser before us, it is hashed as its fields and files: the type alone.)
  if ((type.charCodeAt(0) | 0x20) === 0x6d) {
    const parts = withoutBoundary(type, body);
    if (parts !== undefined) [type, body] = parts;
  }
  // One template, not a string per field (the same text as three `field()`s).
  let head = `${method.length}:${method}${url.length}:${url}${type.length}:${type}`;
  for (const value of headers) head += field(value === undefined ? '' : [value].flat().join(', '));
  // Only when sent, so a request without one hashes as it did before this field existed.
  if (contentEncoding !== undefined) head += `c${field(contentEncoding)}`;
  if (body === undefined || body === null || isEmpty(body)) return sha256(`${head}e`);
  if (typeof body === 'string') return sha256(`${head}b${Buffer.byteLength(body)}:${body}`);
  if (body instanceof Uint8Array) {
    // ASCII bytes are their own UTF-8: hashed as one string with the head, they hash as the bytes
    // behind it, with two native calls instead of four (on a busy server, where little of the
    // path is in cache, a fingerprint took 5.5-6.8 µs this way and 4.6-5.8 µs this one).
    if (oneShot !== undefined && body.byteLength <= ASCII_STRING_BYTES && isAscii(body)) {
      return oneShot('sha256', `${head}b${body.byteLength}:${latin1(body)}`, 'base64url');
    }
    return sha256(`${head}b${body.byteLength}:`, body);
  }
  return sha256(`${head}j${canonical(body)}`);
}

/**
 * A multipart body and its content type without their boundary: the type without its boundary
 * parameter (marked with a line break, which no header value holds, so no type sent matches it),
 * and, for the body's bytes, the SHA-256 of the runs between its delimiters (`--boundary` at its
 * start or after a CRLF, the CRLF with it) behind their lengths, so two bodies match only when
 * they split into the same parts. A body that is not bytes (a parser's value) is kept. Undefined
 * when the type is not multipart or names no boundary, or the body has over {@link MAX_PARTS}.
 */
function withoutBoundary(type: string, body: unknown): [string, unknown] | undefined {
  const found = boundaryOf(type);
  if (found === undefined) return undefined;
  const { boundary, start, end } = found;
  const bare = `${type.slice(0, start)}${type.slice(end)}\n`;
  // Text (a text parser took the body) is its bytes: kept whole, one text under two boundaries
  // (two different uploads) hashed the same.
  if (typeof body === 'string') body = Buffer.from(body);
  if (!(body instanceof Uint8Array)) return [bare, body];
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const delimiter = Buffer.from(`--${boundary}`, 'latin1');
  // Where each run starts and ends: hashed in place, never copied (a copy of a megabyte is
  // slower than its hash on a busy machine).
  const runs: number[] = [];
  let lengths = '';
  let from = 0;
  for (let at = bytes.indexOf(delimiter); at !== -1; at = bytes.indexOf(delimiter, at + delimiter.length)) {
    const end = at === 0 ? 0 : at - 2;
    if (at !== 0 && (end < from || bytes[end] !== 0x0d || bytes[end + 1] !== 0x0a)) continue;
    // Past a thousand parts, hashed as sent, boundary and all (its retry under a new boundary
    // gets 422): a body made of delimiters would cost a few calls each.
    if (runs.length >= MAX_PARTS * 2) return undefined;
    runs.push(from, end);
    lengths += `${end - from},`;
    from = at + delimiter.length;
  }
  runs.push(from, bytes.length);
  const hash = crypto.createHash('sha256').update(`${lengths}${bytes.length - from}:`);
  for (let i = 0; i < runs.length; i += 2) hash.update(bytes.subarray(runs[i], runs[i + 1]));
  return [bare, `m${hash.digest('base64url')}`];
}

/** A type whose subtype is a token (RFC 9110 5.6.2: `\w` and these), as busboy (multer's parser) reads it. */
const MEDIA_TYPE = /^multipart\/[!#$%&'*+.^`|~\w-]+/i;
/** One parameter of token name and value, or a quoted value with no escape (parsers read those two ways). */
const PARAMETER = /[ \t]*(;[ \t]*([!#$%&'*+.^`|~\w-]+)=(?:"([^"\\\r\n]*)"|([!#$%&'*+.^`|~\w-]+)))/y;

/**
 * The boundary of a multipart type, as the parser that splits the body reads it (busboy: the first
 * `boundary` parameter, its name in any case), and where its parameter is in the type.
 * Undefined for a type whose parameters do not all parse (a `boundary=` inside another quoted
 * value is no boundary; an escaped quote may be read two ways): its body is hashed as sent, for
 * a scan on another boundary than the parser's split two different uploads into the same runs.
 */
function boundaryOf(type: string): { boundary: string; start: number; end: number } | undefined {
  const media = MEDIA_TYPE.exec(type);
  if (media === null) return undefined;
  let found: { boundary: string; start: number; end: number } | undefined;
  let at = media[0].length;
  PARAMETER.lastIndex = at;
  for (let p = PARAMETER.exec(type); p !== null; p = PARAMETER.exec(type)) {
    at = PARAMETER.lastIndex;
    if (!found && p[2]?.toLowerCase() === 'boundary')
      found = { boundary: p[3] ?? p[4] ?? '', start: at - (p[1] as string).length, end: at };
  }
  return found?.boundary && /^[ \t]*$/.test(type.slice(at)) ? found : undefined;
}

/** The most delimiters a multipart body is hashed without its boundary through. */
const MAX_PARTS = 1_000;

/** ASCII bodies up to this size are hashed as one string with the head. */
const ASCII_STRING_BYTES = 8_192;

function isAscii(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if ((bytes[i] as number) > 0x7f) return false;
  return true;
}

/** Each byte as one character (for ASCII, the text itself). */
function latin1(bytes: Uint8Array): string {
  const buffer = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return buffer.toString('latin1');
}

/** Bodies up to this size are hashed in one call, copied behind the head; bigger ones are streamed. */
const ONE_SHOT_BYTES = 65_536;

/** SHA-256 of `text` (UTF-8) followed by `bytes`, base64url. */
function sha256(text: string, bytes?: Uint8Array): string {
  if (oneShot === undefined || (bytes !== undefined && bytes.byteLength > ONE_SHOT_BYTES)) {
    const hash = crypto.createHash('sha256').update(text);
    if (bytes !== undefined) hash.update(bytes);
    return hash.digest('base64url');
  }
  if (bytes === undefined) return oneShot('sha256', text, 'base64url');
  const length = Buffer.byteLength(text);
  const all = Buffer.allocUnsafe(length + bytes.byteLength);
  all.write(text, 0, length, 'utf8');
  all.set(bytes, length);
  return oneShot('sha256', all, 'base64url');
}

function isEmpty(body: unknown): boolean {
  return body === '' || (body instanceof Uint8Array && body.byteLength === 0);
}

/** Compares two fingerprints in constant time (for equal lengths, which SHA-256 digests have). */
export function sameFingerprint(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  // No early exit: every character is compared, whatever differs first.
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/** A length-prefixed field, so no two different sequences of fields make the same string. */
function field(value: string): string {
  return `${value.length}:${value}`;
}

/** Canonical JSON: object keys sorted, undefined properties left out, bytes and bigints tagged. */
function canonical(value: unknown): string {
  if (typeof value === 'bigint') return `n${value}`;
  // JSON.stringify maps undefined, functions and symbols to undefined: hash them as null.
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (value instanceof Uint8Array) return `b${field(Buffer.from(value).toString('base64'))}`;
  if (Array.isArray(value)) {
    let out = '[';
    for (const item of value) out += `${canonical(item)},`;
    return `${out}]`;
  }
  const json = (value as { toJSON?: () => unknown }).toJSON;
  if (typeof json === 'function') return canonical(json.call(value));
  let out = '{';
  for (const key of Object.keys(value).sort()) {
    const item = (value as Record<string, unknown>)[key];
    if (item !== undefined) out += `${JSON.stringify(key)}:${canonical(item)},`;
  }
  return `${out}}`;
}
