import { Buffer } from 'node:buffer';
import * as crypto from 'node:crypto';

// One-shot SHA-256 (Node 20.12+): no Hash object per request. Older Nodes stream into createHash.
export const oneShot = (
  crypto as { hash?: (algorithm: string, data: Buffer | string, encoding: 'base64url') => string }
).hash;

/** Bodies up to this size are hashed in one call, copied behind the head; bigger ones are streamed. */
export const ONE_SHOT_BYTES = 65_536;

/** SHA-256 of `text` (UTF-8) followed by `bytes`, base64url. */
export function sha256(text: string, bytes?: Uint8Array): string {
  if (oneShot === undefined || (bytes !== undefined && bytes.byteLength > ONE_SHOT_BYTES)) {
    const hash = crypto.createHash('sha256').update(text);
    if (bytes !== undefined) hash.update(bytes);
    return hash.digest('base64url');
  }
  if (bytes === undefined) return oneShot('sha256', text, 'base64url');
  // Bytes alone: hashed as they are, no copy.
  if (text === '') return oneShot('sha256', bytes as Buffer, 'base64url');
  const length = Buffer.byteLength(text);
  const all = Buffer.allocUnsafe(length + bytes.byteLength);
  all.write(text, 0, length, 'utf8');
  all.set(bytes, length);
  return oneShot('sha256', all, 'base64url');
}
