import { Buffer } from 'node:buffer';
import { copyHeaders, type StoredResponse, setHeader } from '../store.js';
import { Chunks } from './stream.js';

/**
 * Headers a replay carries by default: what describes the body and the resource it made.
 * `content-encoding` too: a body stored compressed means nothing without it.
 */
export const defaultReplayHeaders = [
  'content-type',
  'content-encoding',
  'location',
  'etag',
  'cache-control',
  'link',
] as const;

/**
 * Never stored, whatever `replayHeaders` says: credentials (a replay may reach another session of
 * the same caller), hop-by-hop headers, and what the replay sets itself.
 */
const neverStored = new Set([
  'set-cookie',
  'www-authenticate',
  'proxy-authenticate',
  'authorization',
  'proxy-authorization',
  'authentication-info',
  'proxy-authentication-info',
  'cookie',
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
  'idempotent-replayed',
]);

/**
 * The lower-cased names of the headers to store, with the never-stored ones taken out; `read`
 * lists them with `connection` (its list names more hop-by-hop headers): what is read off a
 * response.
 */
export function replayableHeaders(extra: readonly string[]): ReplayableHeaders {
  const names = new Set<string>([...defaultReplayHeaders, ...extra.map((n) => n.toLowerCase())]);
  for (const name of neverStored) names.delete(name);
  return Object.assign(names, { read: ['connection', ...names] });
}

/** The same names and `content-length`: what a HEAD's record keeps (its length is the GET body's). */
export function withLength(replayable: ReplayableHeaders): ReplayableHeaders {
  const names = new Set<string>(replayable);
  names.add('content-length');
  return Object.assign(names, { read: [...replayable.read, 'content-length'] });
}

/** The names of the headers a record keeps, and (`read`) the names read off a response for it. */
export type ReplayableHeaders = ReadonlySet<string> & { readonly read: readonly string[] };

type OutgoingHeaders = Record<string, number | string | readonly string[] | undefined>;

/** Picks the allowed headers from a response's headers (any case), as strings, in a new object. */
export function pickHeaders(headers: OutgoingHeaders, allowed: ReadonlySet<string>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  // Headers listed in `Connection` are hop-by-hop too (RFC 9110 7.6.1).
  const connection = headers.connection ?? headers.Connection;
  const hopByHop = connection === undefined ? '' : String(connection).toLowerCase();
  // Own names without an entries array per response. (Not for-in: a response's headers are a
  // null-prototype object, in dictionary mode, whose for-in V8 walks on its slow path.)
  for (const rawName of Object.keys(headers)) {
    const value = headers[rawName];
    if (value === undefined) continue;
    // Lower-cased only when not allowed as it is: Node and Fastify keep the names they set in
    // lower case, and a lower-cased copy of one cost a call into V8's runtime (~190 instructions).
    let name = rawName;
    if (!allowed.has(name)) {
      name = rawName.toLowerCase();
      if (name === rawName || !allowed.has(name)) continue;
    }
    if (hopByHop !== '' && hopByHop.split(',').some((h) => h.trim() === name)) continue;
    setHeader(out, name, Array.isArray(value) ? value.map(String) : typeof value === 'string' ? value : String(value));
  }
  return out;
}

/**
 * The response headers a record may keep, read one name at a time with `getHeader` (the
 * allowed ones and `connection`); `pickHeaders` then picks from these. Reading a few names
 * spares a copy of all of a response's headers (`getHeaders()`) and their list: about 500 bytes
 * less a response on Express (V8's sampling heap profiler, 10,000 requests). Not for Fastify's
 * reply, whose `getHeader` lower-cases each name twice: the plugin reads its `getHeaders()`.
 * `explicit`: headers given to `writeHead()`, lower-cased, which win.
 */
export function allowedHeaders(
  response: { getHeader(name: string): unknown },
  allowed: ReplayableHeaders,
  explicit?: Readonly<Record<string, string | string[]>>,
): OutgoingHeaders {
  const out: OutgoingHeaders = {};
  const names = allowed.read;
  for (let i = 0; i < names.length; i++) {
    const name = names[i] as string;
    const value = explicit?.[name] ?? response.getHeader(name);
    // A list is copied: it is the app's own array (Node keeps it as set), which the app may
    // change after the head went with it.
    if (value !== undefined) out[name] = (Array.isArray(value) ? [...value] : value) as OutgoingHeaders[string];
  }
  return out;
}

/**
 * Collects a response body, chunk by chunk, until it passes `limit` bytes. A body that is one
 * short string of ASCII characters (a small JSON answer) is kept as that string, its UTF-8 bytes
 * one character a byte: no Buffer is made for it unless asked (see {@link text}).
 */
export class BodyCollector {
  // Made at the first chunk kept as bytes: a body of one short ASCII string (most) needs none.
  #chunks: Chunks | undefined;
  /** The body while it is one string of at most {@link TEXT_BYTES} ASCII characters. */
  #text: string | undefined;
  #overflow = false;

  constructor(readonly limit: number) {}

  /** False once the body has grown past the limit: it will not be stored. */
  get storable(): boolean {
    return !this.#overflow;
  }

  add(chunk: unknown, encoding?: BufferEncoding): void {
    if (this.#overflow || chunk === undefined || chunk === null) return;
    if (
      typeof chunk === 'string' &&
      this.#text === undefined &&
      (this.#chunks === undefined || this.#chunks.size === 0) &&
      asciiText(chunk, encoding)
    ) {
      if (chunk.length === 0) return;
      if (chunk.length > this.limit) this.#overflow = true;
      else this.#text = chunk;
      return;
    }
    const chunks = (this.#chunks ??= new Chunks());
    const text = this.#text;
    if (text !== undefined) {
      this.#text = undefined;
      chunks.push(Buffer.from(text, 'latin1'));
    }
    // Bytes of the caller's are copied (it may reuse its buffer after write() returns); a string
    // is encoded into a buffer of our own.
    const own = !(chunk instanceof Uint8Array);
    const bytes = toBuffer(chunk, encoding);
    if (bytes.length === 0) return;
    if (chunks.size + bytes.length > this.limit) {
      this.#overflow = true;
      this.#chunks = undefined;
      return;
    }
    chunks.push(own ? bytes : Buffer.from(bytes));
  }

  /** The body as a string of its bytes, one character a byte, when it is one short ASCII string; else undefined. */
  text(): string | undefined {
    return this.#text;
  }

  bytes(): Buffer {
    if (this.#text !== undefined) return Buffer.from(this.#text, 'latin1');
    // The chunks are copies already: one needs no second.
    return this.#chunks?.concat() ?? Buffer.alloc(0);
  }
}

/**
 * The longest string body kept as it is: as long as the bodies an in-process store keeps as a
 * string of their bytes.
 */
const TEXT_BYTES = 96;

/**
 * Whether `chunk`, written in `encoding`, is sent as its own characters, one byte each: a string
 * of at most {@link TEXT_BYTES} ASCII characters in UTF-8 (or Node's default, UTF-8).
 */
function asciiText(chunk: string, encoding: BufferEncoding | undefined): boolean {
  if (chunk.length > TEXT_BYTES) return false;
  if (encoding !== undefined && encoding !== 'utf8' && encoding !== 'utf-8') return false;
  // Each character past ASCII (a lone surrogate too) takes two bytes or more in UTF-8.
  return Buffer.byteLength(chunk, 'utf8') === chunk.length;
}

function toBuffer(chunk: unknown, encoding: BufferEncoding | undefined): Buffer {
  if (typeof chunk === 'string') return Buffer.from(chunk, encoding ?? 'utf8');
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  return Buffer.from(String(chunk));
}

/**
 * The response a replay sends: the stored one, marked, with its length. A 204 or 304 has
 * neither body nor `Content-Length` (RFC 9110 8.6, 15.3.5, 15.4.5). A HEAD's has the
 * `Content-Length` its first response sent (what a GET would send), or its stored body's length
 * where the framework kept the GET body, or none: never 0 for a resource that is not empty.
 * `shared`: `stored` is an in-process store's own record (a body kept as a string is a string
 * of its bytes, one character a byte), copied once here; otherwise a copy handed out already.
 * `kept`: the body, where `stored` does not hold it (an in-process record's, see keptBodyOf).
 */
export function replayOf(stored: ReplaySource, shared = false, head = false, kept?: Uint8Array | string): HttpResponse {
  const body = kept ?? stored.body;
  if (!head && typeof body === 'string' && stored.status !== 204 && stored.status !== 304 && ascii(body)) {
    return new TextReplay(stored.status, stored.headers, body);
  }
  const headers = replayHeaders(stored.headers);
  if (stored.status === 204 || stored.status === 304) {
    return { status: stored.status, headers, body: Buffer.alloc(0) };
  }
  // The replay's own bytes: a string of them (an in-process store's short body) or the store's
  // own Buffer (`shared`) copied; a copy handed out already (decodeOutcome) viewed, not copied again.
  const bytes =
    typeof body === 'string'
      ? Buffer.from(body, 'latin1')
      : shared
        ? Buffer.from(body)
        : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  if (!head) headers['content-length'] = String(bytes.length);
  else {
    // A HEAD's record: the length its first response sent, else its stored body's (the body is
    // kept: Fastify's HEAD route counts it and sends none), else none.
    const sent = headers['content-length'];
    if (Array.isArray(sent)) headers['content-length'] = sent[0] as string;
    else if (sent === undefined && bytes.length > 0) headers['content-length'] = String(bytes.length);
  }
  return { status: stored.status, headers, body: bytes };
}

/**
 * The replay's headers: a copy of the stored ones to extend, lists copied too (the store's own
 * record, from an in-process store's call without a promise, must not see what a later layer
 * does to the replay: a hook that pushes to a header's list), marked. copyHeaders keeps a header
 * named `__proto__` a header.
 */
function replayHeaders(stored: StoredResponse['headers']): Record<string, string | readonly string[]> {
  const headers: Record<string, string | readonly string[]> = copyHeaders(stored);
  headers['idempotent-replayed'] = 'true';
  return headers;
}

/** Whether a string of bytes (one character a byte) is ASCII: its UTF-8 is then those bytes. */
function ascii(text: string): boolean {
  return Buffer.byteLength(text, 'utf8') === text.length;
}

/**
 * The replay of a short ASCII body an in-process store keeps as a string (one character a byte):
 * an adapter may send the string (one write of head and body, where a Buffer's takes two). Its
 * bytes and its headers' copy are made only when read: Fastify sends the text, and writes the
 * stored headers and the replay's own two ({@link TextReplay.stored}) into its reply. (Made
 * whether read or not, the bytes cost a Fastify replay about 1,600 instructions and the copy
 * about 1,800: bench/http-instructions.ts, the README's "Hot path".)
 */
export class TextReplay implements HttpResponse {
  #headers: Record<string, string | readonly string[]> | undefined;
  #body: Buffer | undefined;
  constructor(
    readonly status: number,
    /** The store's own headers: read, never changed (lists copied by whoever keeps them). */
    readonly stored: StoredResponse['headers'],
    readonly text: string,
  ) {}

  get headers(): Readonly<Record<string, string | readonly string[]>> {
    if (this.#headers === undefined) {
      const headers = replayHeaders(this.stored);
      headers['content-length'] = String(this.text.length);
      this.#headers = headers;
    }
    return this.#headers;
  }

  get body(): Buffer {
    this.#body ??= Buffer.from(this.text, 'latin1');
    return this.#body;
  }
}

/** A stored response to replay; an in-process store keeps a short body as a string of its bytes. */
export type ReplaySource = Omit<StoredResponse, 'body'> & { readonly body: Uint8Array | string };

/** A complete response the middleware sends itself: a replay or a problem. */
export interface HttpResponse {
  readonly status: number;
  /** A text replay's (see {@link TextReplay}) is a getter of its class too, as `body` is. */
  readonly headers: Readonly<Record<string, string | readonly string[]>>;
  /**
   * The bytes to send. A text replay's (see {@link replayOf}) is a getter of its class, made when
   * first read: not an own property, so a spread, `structuredClone`, `JSON.stringify` or
   * `Object.keys` of it leaves `body` (and `headers`) out; a copy reads them
   * (`{ ...response, headers: response.headers, body: response.body }`).
   * (An own getter, `Object.defineProperty` per replay, cost a Fastify replay about 2,100
   * instructions, more than the Buffer it spares.)
   */
  readonly body: Buffer;
  /** The same bytes as an ASCII string, when the replay has them as one (see {@link replayOf}). */
  readonly text?: string;
}
