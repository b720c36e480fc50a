import { createHash, type Hash, timingSafeEqual } from 'node:crypto';

/** The parts of a request that must match for a retry to replay. */
export interface RequestShape {
  readonly method: string;
  /** Path and query, as the client sent them. */
  readonly url: string;
  /** The `content-type` header, if any. */
  readonly contentType: string | undefined;
  /** A parsed body (any JSON-like value), raw bytes, a string, or undefined for none. */
  readonly body: unknown;
  /** Values of the headers named in the `fingerprint` option, in that order. */
  readonly headers: readonly (string | readonly string[] | undefined)[];
}

/**
 * SHA-256 of method, URL, body and the selected headers, base64url. A JSON body is hashed in a
 * canonical form (object keys sorted), so key order and whitespace do not change it; any other
 * body is hashed as its raw bytes.
 */
export function requestFingerprint(shape: RequestShape): string {
  const hash = createHash('sha256');
  field(hash, shape.method.toUpperCase());
  field(hash, shape.url);
  for (const value of shape.headers) field(hash, value === undefined ? '' : [value].flat().join(', '));
  hashBody(hash, shape.body, isJson(shape.contentType));
  return hash.digest('base64url');
}

/** Compares two fingerprints in constant time (for equal lengths, which SHA-256 digests have). */
export function sameFingerprint(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function isJson(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  const type = contentType.split(';', 1)[0]?.trim().toLowerCase() ?? '';
  return type === 'application/json' || type.endsWith('+json');
}

function hashBody(hash: Hash, body: unknown, json: boolean): void {
  if (body === undefined || body === null) return void hash.update('e');
  if (typeof body === 'string' || body instanceof Uint8Array) {
    const parsed = json ? tryParse(body) : undefined;
    if (parsed === undefined) {
      hash.update('b');
      hash.update(body);
    } else {
      hash.update('j');
      canonical(hash, parsed.value);
    }
    return;
  }
  hash.update('j');
  canonical(hash, body);
}

function tryParse(body: string | Uint8Array): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(typeof body === 'string' ? body : Buffer.from(body).toString('utf8')) };
  } catch {
    return undefined; // not JSON after all: its bytes are what the handler will see
  }
}

/** Writes a length-prefixed field, so no two different sequences of fields hash the same. */
function field(hash: Hash, value: string): void {
  hash.update(`${Buffer.byteLength(value)}:`);
  hash.update(value);
}

function canonical(hash: Hash, value: unknown): void {
  if (typeof value === 'bigint') return void hash.update(`n${value}`);
  if (value === null || typeof value !== 'object') {
    // JSON.stringify maps undefined, functions and symbols to undefined: hash them as null.
    hash.update(JSON.stringify(value) ?? 'null');
    return;
  }
  if (value instanceof Uint8Array) {
    hash.update('b');
    field(hash, Buffer.from(value).toString('base64'));
    return;
  }
  if (Array.isArray(value)) {
    hash.update('[');
    for (const item of value) {
      canonical(hash, item);
      hash.update(',');
    }
    hash.update(']');
    return;
  }
  const json = (value as { toJSON?: () => unknown }).toJSON;
  if (typeof json === 'function') {
    canonical(hash, json.call(value));
    return;
  }
  hash.update('{');
  for (const key of Object.keys(value).sort()) {
    const item = (value as Record<string, unknown>)[key];
    if (item === undefined) continue;
    hash.update(JSON.stringify(key));
    hash.update(':');
    canonical(hash, item);
    hash.update(',');
  }
  hash.update('}');
}
