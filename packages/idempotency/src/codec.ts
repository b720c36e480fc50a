import { createHash } from 'node:crypto';
import { IdempotencyValueError } from './errors.js';

/*
 * Stored values are JSON with one extension: bytes. A Uint8Array (or Buffer) is written as
 * {"$bytes": "<base64>"}; a user object whose only key is `$bytes` or `$object` is wrapped in
 * {"$object": ...} so it cannot be mistaken for one. The encoded text is `[value]`, or `[]` for
 * `undefined`, so a function that returns nothing replays as nothing.
 */

const SUPPORTED = 'store JSON values (plain objects, arrays, strings, finite numbers, booleans, null) or Uint8Array';

/** Encodes `value` for storage, or throws {@link IdempotencyValueError} naming the bad path. */
export function encodeValue(value: unknown, path = 'result'): string {
  if (value === undefined) return '[]';
  try {
    return `[${JSON.stringify(toStorable(value, new Set()))}]`;
  } catch (error) {
    if (error instanceof Unsupported) throw new IdempotencyValueError(path + error.path, error.problem);
    throw error;
  }
}

/** Decodes what {@link encodeValue} wrote. Bytes come back as Buffers; every call returns a fresh copy. */
export function decodeValue(text: string): unknown {
  const outer = JSON.parse(text) as unknown[];
  return outer.length === 0 ? undefined : fromStorable(outer[0]);
}

/** Thrown while walking a value; each level prepends its segment, so no path is built unless needed. */
class Unsupported {
  path = '';
  constructor(readonly problem: string) {}
}

function at<T>(segment: string, walk: () => T): T {
  try {
    return walk();
  } catch (error) {
    if (error instanceof Unsupported) error.path = segment + error.path;
    throw error;
  }
}

function toStorable(value: unknown, seen: Set<object>): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      if (!Number.isFinite(value)) throw new Unsupported(`${value} is not a JSON number`);
      return value;
    case 'object':
      if (value === null) return null;
      return objectToStorable(value, seen);
    case 'undefined':
      throw new Unsupported('undefined is not supported here (JSON would turn it into null)');
    default:
      throw new Unsupported(`a ${typeof value} is not supported; ${SUPPORTED}`);
  }
}

function objectToStorable(value: object, seen: Set<object>): unknown {
  if (value instanceof Uint8Array) {
    return { $bytes: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') };
  }
  if (seen.has(value)) throw new Unsupported('a circular reference is not supported');
  seen.add(value);
  let out: unknown;
  if (Array.isArray(value)) {
    const items: unknown[] = new Array(value.length);
    for (let i = 0; i < value.length; i++) items[i] = at(`[${i}]`, () => toStorable(value[i], seen));
    out = items;
  } else {
    if (!isPlainObject(value)) throw new Unsupported(`${describeObject(value)} is not supported; ${SUPPORTED}`);
    // No prototype: a `__proto__` key (JSON.parse makes one) stays a key, not a prototype.
    const entries: Record<string, unknown> = Object.create(null);
    for (const k in value) {
      const v = (value as Record<string, unknown>)[k];
      if (v !== undefined) entries[k] = at(`.${k}`, () => toStorable(v, seen)); // JSON drops undefined properties too
    }
    out = isReservedShape(entries) ? { $object: entries } : entries;
  }
  seen.delete(value);
  return out;
}

function fromStorable(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map(fromStorable);
  const record = value as Record<string, unknown>;
  if (isReservedShape(record)) {
    if (typeof record.$bytes === 'string') return Buffer.from(record.$bytes, 'base64');
    return decodeEntries(record.$object as Record<string, unknown>);
  }
  return decodeEntries(record);
}

function decodeEntries(record: Record<string, unknown>): Record<string, unknown> {
  // fromEntries defines each key as its own: a stored `__proto__` key is not made a prototype.
  return Object.fromEntries(Object.entries(record).map(([k, v]) => [k, fromStorable(v)]));
}

function isReservedShape(record: Record<string, unknown>): boolean {
  let count = 0;
  for (const k in record) {
    if (++count > 1 || (k !== '$bytes' && k !== '$object')) return false;
  }
  return count === 1;
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function describeObject(value: object): string {
  if (value instanceof Date) return 'a Date (store date.toISOString() instead)';
  if (value instanceof Map || value instanceof Set)
    return `a ${value.constructor.name} (store an array or object instead)`;
  const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === 'string' && name !== '' ? `an instance of ${name}` : 'an object with a custom prototype';
}

/**
 * A stable hash of a payload: SHA-256 over a canonical JSON form (object keys sorted, bytes and
 * dates tagged, undefined properties left out), base64url. Compute it before the handler runs,
 * so a handler that mutates its input cannot change it.
 */
export function fingerprintOf(value: unknown): string {
  return createHash('sha256')
    .update(canonical(value, 'input', new Set()))
    .digest('base64url');
}

function canonical(value: unknown, path: string, seen: Set<object>): string {
  switch (typeof value) {
    case 'undefined':
      return 'u';
    case 'bigint':
      return `n${value}`;
    case 'object':
      if (value === null) return 'null';
      return canonicalObject(value, path, seen);
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      // Unquoted: the string '#NaN' is quoted, and must not share NaN's fingerprint.
      return Number.isFinite(value) ? JSON.stringify(value) : `#${value}`;
    default:
      throw new IdempotencyValueError(
        path,
        `a ${typeof value} cannot be fingerprinted; pass a \`fingerprint\` function that picks the fields that matter`,
      );
  }
}

function canonicalObject(value: object, path: string, seen: Set<object>): string {
  if (value instanceof Uint8Array)
    return `b${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64')}`;
  if (value instanceof Date) return `d${value.getTime()}`;
  if (seen.has(value)) throw new IdempotencyValueError(path, 'a circular reference cannot be fingerprinted');
  seen.add(value);
  try {
    if (Array.isArray(value)) return `[${value.map((v, i) => canonical(v, `${path}[${i}]`, seen)).join(',')}]`;
    if (!isPlainObject(value)) {
      throw new IdempotencyValueError(
        path,
        `${describeObject(value)} cannot be fingerprinted; pass a \`fingerprint\` function that picks the fields that matter`,
      );
    }
    const keys = Object.keys(value).sort();
    const parts: string[] = [];
    for (const k of keys) {
      const v = (value as Record<string, unknown>)[k];
      if (v !== undefined) parts.push(`${JSON.stringify(k)}:${canonical(v, `${path}.${k}`, seen)}`);
    }
    return `{${parts.join(',')}}`;
  } finally {
    seen.delete(value);
  }
}
