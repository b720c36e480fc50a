import { Buffer } from 'node:buffer';
import * as crypto from 'node:crypto';
import { HoldfastConfigError } from '@holdfast/core';
import { Form, type Span } from '../form.js';
import { ONE_SHOT_BYTES, oneShot, sha256 } from '../sha256.js';

/** `maxRequestBytes`'s default, for {@link requestFingerprint}'s bound on a parsed body. */
const DEFAULT_MAX_REQUEST_BYTES = 1_048_576;

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
  limit = canonicalLimit(DEFAULT_MAX_REQUEST_BYTES),
): string {
  // One canonical string of length-prefixed fields, then the body: two hash updates, not twenty.
  const method = upperCase(anyMethod);
  let type = contentType ?? '';
  // Media types and parameter names are case-insensitive, and spaces around `;` optional (RFC
  // 9110 8.3.1): a type that is not all lower case and bare is hashed in one canonical form.
  // A multipart body is hashed without its boundary, which a client draws afresh for every send
  // (fetch's FormData, browsers, curl): the same upload retried is the same request.
  // (Parsed by an upload parser before us, it is hashed as its fields and files: the type alone.)
  // The last type found canonical is not tested again (a server gets one or two types).
  if (type !== canonicalSeen) {
    if (!NOT_CANONICAL.test(type)) canonicalSeen = type;
    else {
      const media = mediaTypeOf(type);
      if (media !== undefined) {
        const split = media.boundary === undefined ? undefined : withoutBoundary(media.boundary, body);
        // Past MAX_PARTS: hashed as sent, boundary and all (its retry under a new boundary gets 422).
        if (split !== undefined) [type, body] = [`${media.type}\n`, split];
        else if (media.boundary === undefined) type = media.type;
      }
    }
  }
  // Bytes of a size hashed in one call: head and body copied into one reused buffer, the head
  // left there from the last request when its fields are the same (no string per request).
  if (oneShot !== undefined && body instanceof Uint8Array && body.byteLength > 0 && body.byteLength <= ONE_SHOT_BYTES) {
    const at = scratch.head(method, url, type, contentEncoding, headers);
    if (at !== -1) {
      try {
        return scratch.hash(oneShot, at, body);
      } finally {
        scratch.busy = false;
      }
    }
  }
  const head = headOf(method, url, type, contentEncoding, headers);
  if (body === undefined || body === null || isEmpty(body)) return sha256(`${head}e`);
  if (typeof body === 'string') {
    // As UTF-8 a lone surrogate reads as U+FFFD: a text that holds one (a UTF-16 body a text
    // parser decoded) is hashed as its UTF-16 code units, under a tag of its own, or two
    // different bodies under one key were one request. A well-formed text hashes as it did.
    return (body as unknown as { isWellFormed(): boolean }).isWellFormed()
      ? sha256(`${head}b${Buffer.byteLength(body)}:${body}`)
      : sha256(`${head}u${body.length}:`, Buffer.from(body, 'utf16le'));
  }
  if (body instanceof Uint8Array) return sha256(`${head}b${body.byteLength}:`, body);
  return sha256(`${head}j${canonical(body, limit)}`);
}

/**
 * The bytes {@link fingerprintOf} hashes for a request, as a string of them (one character a
 * byte), when they are few ({@link PREIMAGE_BYTES} at most) and the body is bytes sent under a
 * content type already canonical; undefined otherwise. An in-process store keeps these instead of
 * their hash: two requests match when their bytes are the same, compared whole (no hash, no
 * collision), and the hash is worked out only where a fingerprint is shown or compared with one
 * (see memoryStore's `digestOfPreimage`, which gives what fingerprintOf gives).
 */
export function preimageOf(
  anyMethod: string,
  url: string,
  contentType: string | undefined,
  contentEncoding: string | undefined,
  body: unknown,
  headers: RequestShape['headers'],
): string | undefined {
  if (!(body instanceof Uint8Array)) return undefined;
  // Read once, and handed on: a typed array's `byteLength` getter was called, not inlined (~55
  // instructions a read, five reads a request).
  const length = body.byteLength;
  if (length === 0 || length > PREIMAGE_BYTES) return undefined;
  const type = contentType ?? '';
  if (type !== canonicalSeen) {
    if (NOT_CANONICAL.test(type)) return undefined;
    canonicalSeen = type;
  }
  const at = scratch.head(upperCase(anyMethod), url, type, contentEncoding, headers);
  if (at === -1) return undefined;
  try {
    return scratch.preimage(at, body, length);
  } finally {
    scratch.busy = false;
  }
}

/** The longest preimage {@link preimageOf} gives: two blocks of SHA-256. */
export const PREIMAGE_BYTES = 128;

/** The length-prefixed fields before the body (see {@link fingerprintOf}). */
function headOf(
  method: string,
  url: string,
  type: string,
  contentEncoding: string | undefined,
  headers: RequestShape['headers'],
): string {
  // One template, not a string per field (the same text as three `field()`s).
  let head = `${method.length}:${method}${url.length}:${url}${type.length}:${type}`;
  for (const value of headers) head += field(value === undefined ? '' : [value].flat().join(', '));
  // Only when sent, so a request without one hashes as it did before this field existed.
  if (contentEncoding !== undefined) head += `c${field(contentEncoding)}`;
  return head;
}

/**
 * One buffer per process (per thread) that a body's fingerprint is hashed from: the head's UTF-8
 * bytes, `b<length>:`, then the body; the same bytes the string path hashes. The head's fields are
 * kept: the next request with the same ones (a server's usual next request) leaves its bytes in
 * place. Used only between two synchronous lines of {@link fingerprintOf}: no request sees another's.
 */
class Scratch {
  #bytes = Buffer.allocUnsafe(0);
  // The view last hashed: reused while the length hashed is the same.
  #view = this.#bytes;
  // The fields whose head is at the buffer's start, and its length (-1: none there).
  #headLength = -1;
  #method = '';
  #url = '';
  #type = '';
  #encoding: string | undefined;
  // Only heads without selected headers, or with one string each, are kept.
  #headers: (string | undefined)[] = [];
  /**
   * Set from {@link head} until its hash is taken: a call made meanwhile (a body's or header's
   * getter that fingerprints another request) takes the string path, and leaves this head alone.
   */
  busy = false;

  /**
   * Puts the head of these fields at the buffer's start; its length (the buffer is then busy until
   * {@link hash}'s caller frees it), or -1 when it is too long to keep or the buffer is busy.
   */
  head(
    method: string,
    url: string,
    type: string,
    encoding: string | undefined,
    headers: RequestShape['headers'],
  ): number {
    if (this.busy) return -1;
    if (this.#headLength !== -1 && this.#same(method, url, type, encoding, headers)) {
      this.busy = true;
      return this.#headLength;
    }
    this.#headLength = -1;
    this.busy = true;
    let head: string;
    try {
      head = headOf(method, url, type, encoding, headers);
    } catch (error) {
      this.busy = false;
      throw error;
    }
    const length = Buffer.byteLength(head);
    if (length > MAX_SCRATCH_HEAD) {
      this.busy = false;
      return -1;
    }
    // Room for the longest head kept, `b<length>:` and the longest body: allocated once.
    if (this.#bytes.length === 0) this.#bytes = Buffer.allocUnsafe(MAX_SCRATCH_HEAD + ONE_SHOT_BYTES + 16);
    this.#bytes.write(head, 0, length, 'utf8');
    this.#method = method;
    this.#url = url;
    this.#type = type;
    this.#encoding = encoding;
    this.#headers.length = 0;
    for (const value of headers) {
      // A list's head is written, not kept: the next request writes it again.
      if (value !== undefined && typeof value !== 'string') return length;
      this.#headers.push(value);
    }
    this.#headLength = length;
    return length;
  }

  #same(
    method: string,
    url: string,
    type: string,
    encoding: string | undefined,
    headers: RequestShape['headers'],
  ): boolean {
    if (method !== this.#method || url !== this.#url || type !== this.#type || encoding !== this.#encoding)
      return false;
    if (headers.length !== this.#headers.length) return false;
    for (let i = 0; i < headers.length; i++) if (headers[i] !== this.#headers[i]) return false;
    return true;
  }

  /** SHA-256 of the head (`at` bytes, in place), `b<length>:` and `body`, base64url. */
  hash(hash: NonNullable<typeof oneShot>, at: number, body: Uint8Array): string {
    const end = this.#body(at, body, body.byteLength);
    if (this.#view.length !== end) this.#view = this.#bytes.subarray(0, end);
    return hash('sha256', this.#view, 'base64url');
  }

  /** The bytes {@link hash} would hash, as a string of them, when they are {@link PREIMAGE_BYTES} or fewer. */
  preimage(at: number, body: Uint8Array, length: number): string | undefined {
    // `b`, the length's digits (a body this short has three at most) and `:`.
    if (at + length + (length < 10 ? 3 : length < 100 ? 4 : 5) > PREIMAGE_BYTES) return undefined;
    // Buffer's own latin1Slice (what toString('latin1', ...) calls after checking its arguments).
    return (this.#bytes as LatinSlicer).latin1Slice(0, this.#body(at, body, length));
  }

  /** Writes `b<length>:` and `body` (`length` bytes) after the head (`at` bytes); where they end. */
  #body(at: number, body: Uint8Array, length: number): number {
    const bytes = this.#bytes;
    bytes[at++] = 0x62; // b
    const digits = `${length}`;
    for (let i = 0; i < digits.length; i++) bytes[at++] = digits.charCodeAt(i);
    bytes[at++] = 0x3a; // :
    bytes.set(body, at);
    return at + length;
  }
}

/** Node's Buffer method behind `toString('latin1', start, end)` (not in @types/node). */
type LatinSlicer = Buffer & { latin1Slice(start: number, end: number): string };

const scratch = new Scratch();

/** The longest head kept in {@link scratch} (a longer one takes the string path). */
const MAX_SCRATCH_HEAD = 16_384;

/**
 * A multipart body without its boundary: for its bytes, the SHA-256 of the runs between its
 * delimiters (`--boundary` at its start or after a CRLF, the CRLF with it) behind their lengths,
 * so two bodies match only when they split into the same parts. A body that is not bytes (a
 * parser's value) is kept. Undefined when the body has over {@link MAX_PARTS}.
 */
function withoutBoundary(boundary: string, body: unknown): unknown {
  // Text (a text parser took the body) is its bytes: kept whole, one text under two boundaries
  // (two different uploads) hashed the same.
  if (typeof body === 'string') body = Buffer.from(body);
  if (!(body instanceof Uint8Array)) return body;
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
    // A body made of delimiters would cost a few calls each.
    if (runs.length >= MAX_PARTS * 2) return undefined;
    runs.push(from, end);
    lengths += `${end - from},`;
    from = at + delimiter.length;
  }
  runs.push(from, bytes.length);
  const hash = crypto.createHash('sha256').update(`${lengths}${bytes.length - from}:`);
  for (let i = 0; i < runs.length; i += 2) hash.update(bytes.subarray(runs[i], runs[i + 1]));
  return `m${hash.digest('base64url')}`;
}

/** A type that may differ from its canonical form: upper case, parameters, spaces or quotes. */
const NOT_CANONICAL = /[A-Z;\s"]/;
/** The last content type found canonical (see {@link fingerprintOf}). */
let canonicalSeen = '';
/** The last method upper-cased, and its upper case: Node hands every request the same string. */
let methodSeen = '';
let methodUpper = '';

/**
 * `method` in upper case; `toUpperCase()` goes to V8's runtime (about 330 instructions for "POST"),
 * four times a request before. The engine's `isHead` and `isSafe` ask it too.
 */
export function upperCase(method: string): string {
  if (method !== methodSeen) {
    methodUpper = method.toUpperCase();
    methodSeen = method;
  }
  return methodUpper;
}
/** A token (RFC 9110 5.6.2: `\w` and these), as busboy (multer's parser) reads it. */
const TOKEN = /^[!#$%&'*+.^`|~\w-]+$/;
/** A type and subtype, each a token. */
const MEDIA_TYPE = /^([!#$%&'*+.^`|~\w-]+)\/[!#$%&'*+.^`|~\w-]+/;
/** One parameter of token name and value, or a quoted value with no escape (parsers read those two ways). */
const PARAMETER = /[ \t]*;[ \t]*([!#$%&'*+.^`|~\w-]+)=(?:"([^"\\\r\n]*)"|([!#$%&'*+.^`|~\w-]+))/y;

/**
 * A content type in canonical form (type, subtype and parameter names in lower case, a charset's
 * value too; each parameter behind `; `, its value quoted only if it must be) and, for a
 * multipart type, its boundary as the parser that splits the body reads it (busboy: the first
 * `boundary` parameter, its name in any case), left out of the canonical form. Undefined for a
 * type whose parameters do not all parse (a `boundary=` inside another quoted value is no
 * boundary; an escaped quote may be read two ways): it is hashed as sent, body and all, for a
 * scan on another boundary than the parser's split two different uploads into the same runs.
 */
function mediaTypeOf(sent: string): { type: string; boundary: string | undefined } | undefined {
  const media = MEDIA_TYPE.exec(sent);
  if (media === null) return undefined;
  const multipart = (media[1] as string).toLowerCase() === 'multipart';
  let type = media[0].toLowerCase();
  let boundary: string | undefined;
  // Where the boundary parameter is in what was sent.
  let start = 0;
  let end = 0;
  let at = media[0].length;
  PARAMETER.lastIndex = at;
  for (let p = PARAMETER.exec(sent); p !== null; p = PARAMETER.exec(sent)) {
    at = PARAMETER.lastIndex;
    const name = (p[1] as string).toLowerCase();
    let value = p[2] ?? (p[3] as string);
    if (multipart && boundary === undefined && name === 'boundary') {
      [boundary, start, end] = [value, p.index, at];
      continue;
    }
    if (name === 'charset') value = value.toLowerCase();
    type += `; ${name}=${TOKEN.test(value) ? value : `"${value}"`}`;
  }
  if (!/^[ \t]*$/.test(sent.slice(at))) return undefined;
  if (boundary === undefined) return { type, boundary };
  // Hashed as sent, body and all, unless every parser splits the body where the hash does:
  // - an empty boundary splits nothing (parsers refuse it);
  // - one outside printable ASCII is split on its UTF-8 bytes by busboy and @fastify/busboy (a
  //   header's byte 0xE9 is "é", looked for as C3 A9), on one byte per character here: two
  //   boundaries whose delimiters a body holds neither of hashed equal, read as two uploads;
  // - "boundary" anywhere else in the type is a boundary to some parser: RFC 2231's
  //   `boundary*=utf-8''E` to @fastify/busboy, the `boundary=` in `xboundary=` or in another
  //   parameter's quoted value to formidable (a regular expression over the header).
  if (!PRINTABLE.test(boundary) || /boundary/i.test(`${sent.slice(0, start)} ${sent.slice(end)}`)) return undefined;
  return { type, boundary };
}

/** Printable ASCII: one byte per character in latin1 and UTF-8 alike. */
const PRINTABLE = /^[\x20-\x7e]+$/;

/** The most delimiters a multipart body is hashed without its boundary through. */
const MAX_PARTS = 1_000;

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

/**
 * Canonical JSON: object keys sorted, undefined properties left out, bytes and bigints tagged,
 * a Map's entries and a Set's values in their order, tagged.
 * Walked with a stack of its own, not by recursion: a parsed body nested a hundred thousand deep
 * (`[[[…]]]`, 100 kB that express.json() parses) overflowed the call stack, a 500 any client
 * could cause. A value that holds itself (another parser's object with a cycle) is refused.
 * An object met again (parsers with references: devalue, superjson, YAML's aliases) is written
 * again as a copy of its first writing: a value shared hashes as the same value copied, in time
 * that grows with the form's length, which stops at `limit` ({@link CanonicalTooLarge}).
 * Walked again instead, 300 bytes of such a body held 2^40 paths, and one request took the
 * process's whole heap.
 */
function canonical(root: unknown, limit: number): string {
  const out = new Form();
  // Values to write, last first, and the text between them (a Text, leaving its object).
  const todo: unknown[] = [root];
  // Where each object met is written in `out`: its endPiece is -1 while it is being written (it is
  // on the path: met again then, it holds itself).
  const written = new Map<object, Span>();
  while (todo.length > 0) {
    if (out.length > limit) throw new CanonicalTooLarge(limit);
    const value = todo.pop();
    if (value instanceof Text) {
      out.write(value.text);
      if (value.leaves !== undefined) out.close(written.get(value.leaves) as Span);
      continue;
    }
    if (typeof value === 'bigint') out.write(`n${value}`);
    // JSON.stringify maps undefined, functions and symbols to undefined: hash them as null.
    else if (value === null || typeof value !== 'object') out.write(JSON.stringify(value) ?? 'null');
    else {
      const seen = written.get(value);
      if (seen !== undefined) {
        if (seen.endPiece === -1) throw cyclic();
        // Refused before it is copied: the form never grows past the bound by much.
        if (out.length + seen.length > limit) throw new CanonicalTooLarge(limit);
        out.write(out.copy(seen));
        continue;
      }
      const at = out.open();
      written.set(value, at);
      if (value instanceof Uint8Array) {
        out.write(`b${field(Buffer.from(value).toString('base64'))}`);
        out.close(at);
      }
      // Bytes in another view or none (a DataView, an ArrayBuffer): Object.keys() sees none of them.
      else if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
        const bytes = ArrayBuffer.isView(value)
          ? Buffer.from(value.buffer, value.byteOffset, value.byteLength)
          : Buffer.from(value);
        out.write(`b${field(`${Object.prototype.toString.call(value)}${bytes.toString('base64')}`)}`);
        out.close(at);
      } else {
        const json = (value as { toJSON?: () => unknown }).toJSON;
        // A Map or a Set (superjson, devalue, a reviver) holds its entries where Object.keys() sees
        // none: each was `{}`, and another body replayed the first one's response. In their order.
        const entries = value instanceof Map ? [...value] : value instanceof Set ? [...value] : undefined;
        if (Array.isArray(value) || entries !== undefined) {
          const items = entries ?? (value as unknown[]);
          out.write(entries === undefined ? '[' : value instanceof Map ? 'M[' : 'S[');
          todo.push(new Text(']', value));
          for (let i = items.length - 1; i >= 0; i--) todo.push(COMMA, items[i]);
        } else if (typeof json === 'function') {
          todo.push(new Text('', value), json.call(value));
        } else {
          out.write('{');
          todo.push(new Text('}', value));
          const keys = Object.keys(value).sort();
          for (let i = keys.length - 1; i >= 0; i--) {
            const key = keys[i] as string;
            const item = (value as Record<string, unknown>)[key];
            if (item !== undefined) todo.push(COMMA, item, new Text(`${JSON.stringify(key)}:`));
          }
        }
      }
    }
  }
  if (out.length > limit) throw new CanonicalTooLarge(limit);
  return out.text();
}

/**
 * A parsed body whose canonical form is longer than the middleware fingerprints: answered 413,
 * as a body over `maxRequestBytes` is.
 */
export class CanonicalTooLarge extends Error {
  constructor(readonly limit: number) {
    super(`the parsed body's canonical form is over ${limit} characters`);
  }
}

/**
 * The longest canonical form of a parsed body fingerprinted, for a middleware that reads up to
 * `maxRequestBytes` itself: 8 times that, at least 16 Mi and at most 256 Mi characters. JSON parsed and written again
 * grows by at most about 6 times (`1e20` is written `100000000000000000000`); only references
 * (a value shared by many places, many times over) go past that.
 */
export function canonicalLimit(maxRequestBytes: number): number {
  // At most 256 Mi: V8 makes no string past 2^29 - 24 characters (a RangeError, a 500, not a 413).
  return Math.min(Math.max(8 * maxRequestBytes, 16 * 1_048_576), 2 ** 28);
}

/** Text written between the values of {@link canonical}; once written, `leaves` is no longer on the path. */
class Text {
  constructor(
    readonly text: string,
    readonly leaves?: object,
  ) {}
}

const COMMA = new Text(',');

function cyclic(): HoldfastConfigError {
  return new HoldfastConfigError('idempotency', [
    {
      path: 'body',
      message:
        'holds itself (a cycle): a middleware before this one parsed it into a value that cannot be fingerprinted. Mount idempotency() before that middleware, or have it keep the bytes (verify: captureRawBody)',
    },
  ]);
}
