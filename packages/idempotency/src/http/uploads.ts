import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { IncomingMessage } from 'node:http';

/**
 * The files an upload parser mounted before the middleware took from the body (multer's
 * `req.file` and `req.files`), undefined when there are none: the parsed body (`req.body`, the
 * text fields) is then all there is to fingerprint.
 */
export function uploadsOf(req: IncomingMessage): unknown {
  const r = req as { file?: unknown; files?: unknown };
  const file = Object.hasOwn(r, 'file') ? r.file : undefined;
  const files = Object.hasOwn(r, 'files') ? r.files : undefined;
  return file === undefined && files === undefined ? undefined : { file, files };
}

/**
 * What the fingerprint covers of a body an upload parser consumed: its text fields and, for each
 * file, its field, name, type and the SHA-256 of its content: from memory (multer's
 * `memoryStorage()`, `buffer`) or read from disk (`diskStorage()`, `path`; streamed, whatever its
 * size). Rejects with `what`, naming the file, for a file whose content is neither (a storage
 * engine that sent it elsewhere): its content cannot be compared, and another file under the same
 * key would replay this one's response.
 */
export async function uploadsFingerprinted(
  fields: unknown,
  uploads: unknown,
  what: (field: string) => Error,
): Promise<unknown> {
  return { fields, uploads: await described(uploads, what) };
}

async function described(value: unknown, what: (field: string) => Error): Promise<unknown> {
  // Bytes (a file another parser kept as a Buffer) are hashed as bytes: walked as an object, each
  // byte became a key, and a 4 MB file held the event loop for seconds.
  if (value === undefined || value === null || typeof value !== 'object' || value instanceof Uint8Array) return value;
  if (Array.isArray(value)) return Promise.all(value.map((item) => described(item, what)));
  const file = value as UploadedFile;
  if (typeof file.fieldname === 'string') {
    const content = Buffer.isBuffer(file.buffer)
      ? createHash('sha256').update(file.buffer).digest('base64url')
      : typeof file.path === 'string' && file.path !== ''
        ? await digestOf(file.path)
        : undefined;
    if (content === undefined) throw what(file.fieldname);
    return { field: file.fieldname, name: file.originalname, type: file.mimetype, content };
  }
  // No prototype: a group named `__proto__` (multer's `fields()`) is kept as a key, not dropped.
  const out: Record<string, unknown> = Object.create(null);
  for (const [name, item] of Object.entries(value)) out[name] = await described(item, what);
  return out;
}

/** What is read of a file multer describes. */
interface UploadedFile {
  readonly fieldname?: unknown;
  readonly originalname?: unknown;
  readonly mimetype?: unknown;
  readonly buffer?: unknown;
  readonly path?: unknown;
}

function digestOf(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (chunk) => hash.update(chunk))
      .once('error', reject)
      .once('end', () => resolve(hash.digest('base64url')));
  });
}
