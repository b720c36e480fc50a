import fc from 'fast-check';
import { inProcess, type StoreNow } from '../src/memory-store.js';
import { headerChars } from '../src/store.js';

/** A memoryStore's calls without a promise, as the HTTP middleware uses them (all of them: this module's own store). */
export function nowOf(store: object): Required<StoreNow> {
  const now = inProcess(store);
  if (now === undefined) throw new Error('a memoryStore answers in this process');
  return now as Required<StoreNow>;
}

/** What a memoryStore record of `headers` and a body of `bytes` counts against maxBytes (see memory-store.ts). */
export function recordBytes(
  key: string,
  fingerprint: string,
  headers: Record<string, string | string[]>,
  bytes: number,
): number {
  return 256 + 2 * (key.length + fingerprint.length) + 16 + 2 * headerChars(headers) + 16 + bytes;
}

/** The encodings a response's string chunk may be written in (undefined: Node's default, UTF-8). */
export const bodyEncodings = fc.constantFrom<BufferEncoding | undefined>(
  undefined,
  'utf8',
  'utf-8',
  'latin1',
  'hex',
  'base64',
  'ascii',
  'utf16le',
);
