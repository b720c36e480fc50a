import type { IncomingMessage } from 'node:http';

/** Where `captureRawBody` keeps the bytes a body parser read. */
const RAW = Symbol.for('holdfast.idempotency.rawBody');

type WithRaw = IncomingMessage & { [RAW]?: Buffer; rawBody?: unknown; _body?: boolean; body?: unknown };

/**
 * A body parser `verify` hook that keeps the bytes the parser read, so the middleware
 * fingerprints them rather than the parsed value: `express.json({ verify: captureRawBody })`.
 */
export function captureRawBody(req: IncomingMessage, _res: unknown, buf: Buffer): void {
  (req as WithRaw)[RAW] = buf;
}

/** What the middleware can know of a request's body, in order of preference. */
export type BodyBytes =
  /** The bytes, as the client sent them. */
  | { readonly status: 'bytes'; readonly body: Buffer | undefined }
  /** A parser consumed the bytes and kept none: only its parsed value is left. */
  | { readonly status: 'parsed'; readonly body: unknown }
  /** Not read yet: the caller must read it (see {@link readAndRestore}). */
  | { readonly status: 'unread' };

/** The bytes of a request's body, if anything kept them, or what a parser made of them. */
export function bodyOf(req: IncomingMessage): BodyBytes {
  const r = req as WithRaw;
  if (r[RAW] !== undefined) return { status: 'bytes', body: r[RAW] };
  if (Buffer.isBuffer(r.rawBody)) return { status: 'bytes', body: r.rawBody };
  if (Buffer.isBuffer(r.body)) return { status: 'bytes', body: r.body }; // express.raw()
  // body-parser sets `_body` once it consumed the stream.
  if (r._body === true) return { status: 'parsed', body: r.body };
  if (!hasBody(req)) return { status: 'bytes', body: undefined };
  if (req.readableEnded) return { status: 'parsed', body: r.body };
  return { status: 'unread' };
}

function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

/**
 * Reads a request's whole body, then puts the bytes back in front of the stream, so a body
 * parser or handler after the middleware reads it as if nobody had. 'tooLarge' past `limit`
 * (the stream is then left as it is: the caller answers 413), 'aborted' if the client left.
 */
export function readAndRestore(req: IncomingMessage, limit: number): Promise<Buffer | 'tooLarge' | 'aborted'> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (result: Buffer | 'tooLarge' | 'aborted') => {
      req.removeListener('readable', onReadable);
      req.removeListener('error', onAbort);
      req.removeListener('close', onAbort);
      resolve(result);
    };
    const onAbort = () => {
      if (!req.complete) done('aborted');
    };
    function onReadable() {
      for (let chunk: Buffer | null = req.read(); chunk !== null; chunk = req.read()) {
        chunks.push(chunk);
        size += chunk.length;
        if (size > limit) return done('tooLarge');
      }
      if (!req.complete) return;
      // The last read() scheduled 'end' for the next tick; data put back now cancels it.
      // One chunk (most bodies) is handed back as it is: it is hashed before anyone reads it again.
      const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
      if (size > 0) req.unshift(body);
      done(body);
    }
    req.on('readable', onReadable);
    req.once('error', onAbort);
    req.once('close', onAbort);
  });
}
