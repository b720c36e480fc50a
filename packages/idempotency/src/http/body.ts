import { IncomingMessage } from 'node:http';
import { watchPushes } from './stream.js';

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
/** A request body as read: its bytes (none: undefined), or why it could not be. */
export type BodyRead = Buffer | undefined | 'tooLarge' | 'aborted';

export function readAndRestore(req: IncomingMessage, limit: number): Promise<Buffer | 'tooLarge' | 'aborted'> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    // The end of the body: Node's parser sets `complete`; a request that is not Node's own (an
    // HTTP/2 compatibility request, light-my-request) says so by pushing null, which we watch.
    let ended = false;
    if (!(req instanceof IncomingMessage)) {
      watchPushes(req, undefined, () => {
        ended = true;
      });
    }
    const done = (result: Buffer | 'tooLarge' | 'aborted') => {
      req.removeListener('readable', onReadable);
      req.removeListener('error', onAbort);
      req.removeListener('close', onAbort);
      resolve(result);
    };
    const onAbort = () => {
      if (!req.complete && !ended) done('aborted');
    };
    function onReadable() {
      for (let chunk: Buffer | null = req.read(); chunk !== null; chunk = req.read()) {
        chunks.push(chunk);
        size += chunk.length;
        if (size > limit) return done('tooLarge');
      }
      if (!req.complete && !ended) return;
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

/**
 * The whole body of a request no one has read yet, leaving the stream unread for the parsers
 * after the middleware. A body with a `Content-Length` that fits the stream's buffer is watched
 * as it arrives, without reading it; any other is read and put back ({@link readAndRestore}).
 */
export function awaitBody(req: IncomingMessage, limit: number): Promise<Buffer | 'tooLarge' | 'aborted'> {
  const length = req.headers['transfer-encoding'] === undefined ? contentLength(req) : undefined;
  // Under the high-water mark, every push is buffered without pausing the socket: the body
  // arrives whole without anyone reading it.
  // Only Node's own request is pushed its body unasked; others push when read.
  if (
    !(req instanceof IncomingMessage) ||
    length === undefined ||
    length > limit ||
    length >= req.readableHighWaterMark
  ) {
    return readAndRestore(req, limit);
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const onAbort = () => {
      if (req.complete) return;
      req.removeListener('error', onAbort);
      req.removeListener('close', onAbort);
      resolve('aborted');
    };
    const watched = watchPushes(req, chunks, () => {
      req.removeListener('error', onAbort);
      req.removeListener('close', onAbort);
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks));
    });
    if (!watched) return resolve(readAndRestore(req, limit));
    req.once('error', onAbort);
    req.once('close', onAbort);
  });
}

/** The `Content-Length` of a request, if it has one that is a plain decimal number. */
function contentLength(req: IncomingMessage): number | undefined {
  const value = req.headers['content-length'];
  return value !== undefined && /^[0-9]{1,15}$/.test(value) ? Number(value) : undefined;
}
