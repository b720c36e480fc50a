import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { IdempotencyValueError } from './errors.js';
import { Form, type Span } from './form.js';

/*
 * Stored values are JSON with one extension: bytes. A Uint8Array (or Buffer) is written as
 * {"$bytes": "<base64>"}; a user object whose only key is `$bytes` or `$object` is wrapped in
 * {"$object": ...} so it cannot be mistaken for one. The encoded text is `[value]`, or `[]` for
 * `undefined`, so a function that returns nothing replays as nothing.
 */

const SUPPORTED = 'store JSON values (plain objects, arrays, strings, finite numbers, booleans, null) or Uint8Array';

/** The longest text {@link encodeValue} writes (as {@link fingerprintOf}'s bound on an input). */
const MAX_ENCODED = 64 * 1_048_576;

/**
 * Encodes `value` for storage, or throws {@link IdempotencyValueError} naming the bad path. A part
 * shared by several places (met again once written) is stored as a copy of its text, not walked
 * again: a result of a few objects can hold 2^40 paths, and walked as a tree it took the whole heap.
 * Past 64 Mi characters it is refused.
 */
export function encodeValue(value: unknown, path = 'result'): string {
  if (value === undefined) return '[]';
  try {
    return `[${toText(value, new Map())}]`;
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

/**
 * The stored JSON text of `value`, as `JSON.stringify` writes its storable form. `written` holds
 * each object met: its text once written, undefined while it is being written (met again then,
 * it holds itself).
 */
function toText(value: unknown, written: Map<object, string | undefined>): string {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new Unsupported(`${value} is not a JSON number`);
      return JSON.stringify(value);
    case 'object': {
      if (value === null) return 'null';
      if (written.has(value)) {
        const text = written.get(value);
        if (text === undefined) throw new Unsupported('a circular reference is not supported');
        return text;
      }
      written.set(value, undefined);
      const text = objectToText(value, written);
      if (text.length > MAX_ENCODED)
        throw new Unsupported(`it is over ${MAX_ENCODED} characters encoded (its parts shared many times over?)`);
      written.set(value, text);
      return text;
    }
    case 'undefined':
      throw new Unsupported('undefined is not supported here (JSON would turn it into null)');
    default:
      throw new Unsupported(`a ${typeof value} is not supported; ${SUPPORTED}`);
  }
}

function objectToText(value: object, written: Map<object, string | undefined>): string {
  if (value instanceof Uint8Array) {
    const base64 = Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
    return `{"$bytes":${JSON.stringify(base64)}}`;
  }
  const parts: string[] = [];
  let length = 0;
  const add = (text: string) => {
    length += text.length + 1;
    // Checked before the join: the parts of a shared value, copied, can be 2^40 characters long.
    if (length > MAX_ENCODED)
      throw new Unsupported(`it is over ${MAX_ENCODED} characters encoded (its parts shared many times over?)`);
    parts.push(text);
  };
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) add(at(`[${i}]`, () => toText(value[i], written)));
    return `[${parts.join(',')}]`;
  }
  if (!isPlainObject(value)) throw new Unsupported(`${describeObject(value)} is not supported; ${SUPPORTED}`);
  let kept = 0;
  let reserved = true;
  for (const k in value) {
    const v = (value as Record<string, unknown>)[k];
    if (v === undefined) continue; // JSON drops undefined properties too
    add(`${JSON.stringify(k)}:${at(`.${k}`, () => toText(v, written))}`);
    kept++;
    reserved &&= k === '$bytes' || k === '$object';
  }
  const text = `{${parts.join(',')}}`;
  // A user object whose only key is `$bytes` or `$object` is wrapped, so it cannot be mistaken for one.
  return kept === 1 && reserved ? `{"$object":${text}}` : text;
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
  return createHash('sha256').update(canonical(value)).digest('base64url');
}

/** The longest canonical form {@link fingerprintOf} hashes. */
const MAX_CANONICAL = 64 * 1_048_576;

/** Text written between the values of {@link canonical}; once written, `leaves` is off the path. */
class Text {
  constructor(
    readonly text: string,
    readonly leaves?: object,
  ) {}
}

const COMMA = new Text(',');

/** A value to write, and where it is in the input (for errors). */
class Item {
  constructor(
    readonly value: unknown,
    readonly path: string,
  ) {}
}

/**
 * The canonical form. Walked with a stack of its own, not by recursion: an input nested a
 * hundred thousand deep overflowed the call stack. An object met again (a value shared: parsers
 * with references, devalue, superjson, YAML's aliases) is written again as a copy of its first
 * writing: it hashes as the same value copied, in time that grows with the form's length, which
 * stops at {@link MAX_CANONICAL}. Walked again instead, 300 bytes of such a value held 2^40 paths,
 * and fingerprinting it ran for 40 s until the string could grow no more.
 */
function canonical(root: unknown): string {
  const out = new Form();
  const todo: (Item | Text)[] = [new Item(root, 'input')];
  // Where each object met is written in `out`: its endPiece is -1 while it is being written (met
  // again then, it holds itself).
  const written = new Map<object, Span>();
  while (todo.length > 0) {
    if (out.length > MAX_CANONICAL) throw tooLong();
    const next = todo.pop() as Item | Text;
    if (next instanceof Text) {
      out.write(next.text);
      if (next.leaves !== undefined) out.close(written.get(next.leaves) as Span);
      continue;
    }
    const { value, path: at } = next;
    if (typeof value !== 'object' || value === null) {
      out.write(scalar(value, at));
      continue;
    }
    const seen = written.get(value);
    if (seen !== undefined) {
      if (seen.endPiece === -1) throw new IdempotencyValueError(at, 'a circular reference cannot be fingerprinted');
      // Refused before it is copied: the form never grows past the bound by much.
      if (out.length + seen.length > MAX_CANONICAL) throw tooLong();
      out.write(out.copy(seen));
      continue;
    }
    const place = out.open();
    written.set(value, place);
    if (value instanceof Uint8Array) {
      out.write(`b${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64')}`);
      out.close(place);
    } else if (value instanceof Date) {
      out.write(`d${value.getTime()}`);
      out.close(place);
    } else if (Array.isArray(value)) {
      out.write('[');
      todo.push(new Text(']', value));
      for (let i = value.length - 1; i >= 0; i--) {
        todo.push(new Item(value[i], `${at}[${i}]`));
        if (i > 0) todo.push(COMMA);
      }
    } else if (!isPlainObject(value)) {
      throw new IdempotencyValueError(
        at,
        `${describeObject(value)} cannot be fingerprinted; pass a \`fingerprint\` function that picks the fields that matter`,
      );
    } else {
      out.write('{');
      todo.push(new Text('}', value));
      const keys = Object.keys(value).sort();
      let first = true;
      for (let i = keys.length - 1; i >= 0; i--) {
        const k = keys[i] as string;
        const v = (value as Record<string, unknown>)[k];
        if (v === undefined) continue;
        if (!first) todo.push(COMMA);
        first = false;
        todo.push(new Item(v, `${at}.${k}`), new Text(`${JSON.stringify(k)}:`));
      }
    }
  }
  if (out.length > MAX_CANONICAL) throw tooLong();
  return out.text();
}

function tooLong(): IdempotencyValueError {
  return new IdempotencyValueError(
    'input',
    `its canonical form is over ${MAX_CANONICAL} characters; pass a \`fingerprint\` function that picks the fields that matter`,
  );
}

/** The canonical form of a value that is not an object. */
function scalar(value: unknown, path: string): string {
  switch (typeof value) {
    case 'undefined':
      return 'u';
    case 'bigint':
      return `n${value}`;
    case 'object':
      return 'null';
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
