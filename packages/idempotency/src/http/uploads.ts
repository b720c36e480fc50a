import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { HoldfastConfigError } from '@holdfast/core';

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
 * size). Rejects with `elsewhere(field)` for a file whose content is neither (a storage engine
 * that sent it elsewhere): its content cannot be compared, and another file under the same key
 * would replay this one's response; with {@link UnreadableUploadError} for a file on disk that
 * cannot be read (deleted before us: a tmp cleaner); with a config error for files that hold
 * themselves (a parser's cyclic object).
 */
export async function uploadsFingerprinted(
  fields: unknown,
  uploads: unknown,
  elsewhere: (field: string) => Error,
): Promise<unknown> {
  return { fields, uploads: await described(uploads, elsewhere, []) };
}

/** A file on disk that an upload parser stored and that could not be read back. */
export class UnreadableUploadError extends Error {
  override name = 'UnreadableUploadError';
  constructor(
    /** The file's form field. */
    readonly field: string,
    options: { cause: unknown },
  ) {
    // The field only: the path is the server's, and the cause keeps it for its logs.
    super(`the file of field ${JSON.stringify(field.slice(0, 100))} could not be read back from disk`, options);
  }
}

async function described(value: unknown, elsewhere: (field: string) => Error, path: object[]): Promise<unknown> {
  // Bytes (a file another parser kept as a Buffer) are hashed as bytes: walked as an object, each
  // byte became a key, and a 4 MB file held the event loop for seconds.
  if (value === undefined || value === null || typeof value !== 'object' || value instanceof Uint8Array) return value;
  // An object that holds itself (another parser's) was walked until the stack overflowed.
  if (path.includes(value)) throw cyclic();
  const within = [...path, value];
  if (Array.isArray(value)) {
    // One file at a time: opened all at once, the 20,000 small files of one request (multer
    // sets no limit on files) ran the process out of file descriptors (EMFILE, a 500).
    const out: unknown[] = [];
    for (const item of value) out.push(await described(item, elsewhere, within));
    return out;
  }
  const file = value as UploadedFile;
  if (typeof file.fieldname === 'string') {
    const content = Buffer.isBuffer(file.buffer)
      ? createHash('sha256').update(file.buffer).digest('base64url')
      : typeof file.path === 'string' && file.path !== ''
        ? await digestOf(file.path).catch((cause: unknown) => {
            throw new UnreadableUploadError(file.fieldname as string, { cause });
          })
        : undefined;
    if (content === undefined) throw elsewhere(file.fieldname);
    return { field: file.fieldname, name: file.originalname, type: file.mimetype, content };
  }
  // No prototype: a group named `__proto__` (multer's `fields()`) is kept as a key, not dropped.
  const out: Record<string, unknown> = Object.create(null);
  for (const [name, item] of Object.entries(value)) out[name] = await described(item, elsewhere, within);
  return out;
}

function cyclic(): HoldfastConfigError {
  return new HoldfastConfigError('idempotency', [
    {
      path: 'req.files',
      message:
        'holds itself (a cycle): a middleware before this one made it, and it cannot be fingerprinted. Give the middleware plain files (multer) or mount idempotency() before it',
    },
  ]);
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
