import { Buffer } from 'node:buffer';
import { type IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { rootOf } from './node.js';
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
  | { readonly status: 'unread' }
  /** Read before the middleware, and kept nowhere it can see: nothing to fingerprint. */
  | { readonly status: 'gone' };

/**
 * The bytes of a request's body, if anything kept them, or what a parser made of them. `headers`:
 * the request's, read already (Node's `req.headers` is a getter, looked up along an Express
 * request's own chain at each read).
 */
export function bodyOf(req: IncomingMessage, headers: IncomingHttpHeaders): BodyBytes {
  const r = req as WithRaw;
  // Each is set on the request itself. Asked with hasOwn: a property an Express request lacks is
  // looked for along its whole prototype chain, slowly (every request has a map of its own).
  if (has(r, RAW) && r[RAW] !== undefined) return { status: 'bytes', body: r[RAW] };
  if (has(r, 'rawBody') && Buffer.isBuffer(r.rawBody)) return { status: 'bytes', body: r.rawBody };
  if (has(r, 'body') && Buffer.isBuffer(r.body)) return { status: 'bytes', body: r.body }; // express.raw()
  // body-parser sets `_body` once it consumed the stream.
  if (has(r, '_body') && r._body === true) return { status: 'parsed', body: r.body };
  if (!hasBody(headers)) return { status: 'bytes', body: undefined };
  // Read by a layer before us that kept it elsewhere (not `req.body`): every body would look
  // like none, and another body with the same key replay the first's response.
  // An empty body we read ourselves (an idempotency() mounted before this one) ended the stream.
  if (streamOf(req).endEmitted)
    return r.body !== undefined ? { status: 'parsed', body: r.body } : readEmpty.has(req) ? NONE : GONE;
  return { status: 'unread' };
}

const has = Object.hasOwn;

/**
 * A request's stream state, read from its own `_readableState`, not through Readable's getters
 * (`readableEnded`, `destroyed`, `readableHighWaterMark`, which read the same fields): Express
 * gives every request a map of its own, and each getter was looked up along its prototype chain
 * (a megamorphic miss, then another for `_readableState` inside it) on every guarded request. A
 * stream without that state (not Node's) is asked through its getters.
 */
export function streamOf(req: IncomingMessage): ReadableStateView {
  const state = (req as { _readableState?: ReadableStateView })._readableState;
  if (state !== undefined) return state;
  return {
    length: req.readableLength,
    endEmitted: req.readableEnded,
    destroyed: req.destroyed,
    highWaterMark: req.readableHighWaterMark,
  };
}
const GONE: BodyBytes = { status: 'gone' };
const NONE: BodyBytes = { status: 'bytes', body: undefined };
/** Requests whose empty body (chunked, no chunk) {@link readAndRestore} read to its end: nothing to put back. */
const readEmpty = new WeakSet<IncomingMessage>();

function hasBody(headers: IncomingHttpHeaders): boolean {
  return headers['transfer-encoding'] !== undefined || Number(headers['content-length'] ?? 0) > 0;
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
    // A body that had all come before we watched (its null pushed already: an HTTP/2 request
    // read in a preHandler hook) says so only in its stream's state: it was waited for forever.
    const state = (req as { _readableState?: { ended?: boolean } })._readableState;
    const all = () => req.complete || ended || state?.ended === true;
    const onAbort = () => {
      if (!all()) done('aborted');
    };
    function onReadable() {
      for (let chunk: Buffer | null = req.read(); chunk !== null; chunk = req.read()) {
        chunks.push(chunk);
        size += chunk.length;
        if (size > limit) return done('tooLarge');
      }
      if (!all()) return;
      // The last read() scheduled 'end' for the next tick; data put back now cancels it.
      // One chunk (most bodies) is handed back as it is: it is hashed before anyone reads it again.
      const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
      if (size > 0) req.unshift(body);
      else readEmpty.add(req);
      done(body);
    }
    req.on('readable', onReadable);
    req.once('error', onAbort);
    req.once('close', onAbort);
  });
}

/** The least of a refused body {@link discardRest} reads before it closes the connection. */
const DISCARD_AT_LEAST = 1_048_576;

/**
 * The rest of a body refused with 413, discarded as it comes (as Node does for a body nobody
 * reads): left unread, the connection's next request hung; closed at once, a client still
 * sending lost the 413 to a reset. Past as much again as the middleware reads (`limit`, at
 * least 1 MiB), the request is destroyed (its connection; its stream alone on HTTP/2): a client
 * that never stops sending was read for as long as it sent.
 */
export function discardRest(req: IncomingMessage, limit: number): void {
  let left = Math.max(limit, DISCARD_AT_LEAST);
  const onData = (chunk: Buffer) => {
    left -= chunk.length;
    if (left >= 0) return;
    req.removeListener('data', onData);
    req.destroy();
  };
  req.on('data', onData);
  req.resume();
}

/** What reading a request's body came to: its bytes, or why there are none to have. */
export type BodyDone = (read: Buffer | 'tooLarge' | 'aborted') => void;

/**
 * The whole body of a request no one has read yet, leaving the stream unread for the parsers
 * after the middleware; `done` is called once with it. A body with a `Content-Length` that fits
 * the stream's buffer is watched as it arrives, without reading it; any other is read and put
 * back ({@link readAndRestore}). `headers`: the request's, read already (see {@link bodyOf}).
 */
export function readBody(req: IncomingMessage, limit: number, then: BodyDone, headers: IncomingHttpHeaders): void {
  // Never from inside the stream's push or destroy: the middleware goes on from a microtask.
  const done: BodyDone = (read) => queueMicrotask(() => then(read));
  const length = headers['transfer-encoding'] === undefined ? contentLength(headers) : undefined;
  // Under the high-water mark, every push is buffered without pausing the socket: the body
  // arrives whole without anyone reading it.
  // Only Node's own request is pushed its body unasked; others push when read.
  if (
    !(req instanceof IncomingMessage) ||
    length === undefined ||
    length > limit ||
    length >= streamOf(req).highWaterMark
  ) {
    readAndRestore(req, limit).then(then);
    return;
  }
  if (watchThroughRoot(req, done)) return;
  const chunks: Buffer[] = [];
  const onAbort = () => {
    if (req.complete) return;
    req.removeListener('error', onAbort);
    req.removeListener('close', onAbort);
    done('aborted');
  };
  const watched = watchPushes(req, chunks, () => {
    req.removeListener('error', onAbort);
    req.removeListener('close', onAbort);
    done(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks));
  });
  if (!watched) {
    readAndRestore(req, limit).then(then);
    return;
  }
  req.once('error', onAbort);
  req.once('close', onAbort);
}

/**
 * The watch of one Express request's body, kept in a map rather than on the request: Express
 * gives every request a map of its own (it swaps its prototype), so a property added to it, or
 * a listener on a new event, copies all of its property descriptors (about 1.5 KB a request).
 */
class RootWatch {
  readonly chunks: Buffer[] = [];
  constructor(readonly done: BodyDone) {}
}

const rootWatches = new WeakMap<IncomingMessage, RootWatch>();
/** The `push` and `_destroy` each patched root was given. */
const requestRoots = new WeakMap<object, RootMethods>();
const NODE_REQUEST = IncomingMessage.prototype;

/**
 * Watches the body through the request's root prototype (Express's request object), which gets
 * `push` and `_destroy` once: every chunk Node's parser pushes is kept, the last push (null)
 * hands the body over, and a request destroyed before its body came whole (the client left) is
 * 'aborted'. False when the request has no such root, or the `push` or `_destroy` it calls is not
 * the root's (a layer before us set its own on the request, on its app's request object or on
 * the root), or something already buffered or read its body: {@link watchPushes} decides then.
 */
function watchThroughRoot(req: IncomingMessage, done: BodyDone): boolean {
  const root = rootOf(req, NODE_REQUEST);
  if (root === undefined || rootWatches.has(req)) return false;
  // The stream's state, read once: its getters on an Express request are each a slow lookup.
  const state = (req as { _readableState?: ReadableStateView })._readableState;
  if (state === undefined || state.length > 0 || state.endEmitted || state.destroyed || req.complete) return false;
  const methods = requestRoots.get(root) ?? patchRequestRoot(root);
  // Anything in between that does not call on to the root's push would hide the body from us.
  if (!callsRoot(req, root, methods)) return false;
  rootWatches.set(req, new RootWatch(done));
  return true;
}

/**
 * Whether `req.push` and `req._destroy` are the watching ones `root` was given: the root still
 * has them, and nothing before it in the request's chain (the request itself, its app's request
 * object) has its own. Asked with hasOwn and on the root, not read through the request: on an
 * Express request (a map of its own) each read was a slow lookup along its chain.
 */
function callsRoot(req: object, root: object, methods: RootMethods): boolean {
  const r = root as RootMethods;
  if (r.push !== methods.push || r._destroy !== methods._destroy) return false;
  for (let o: object | null = req; o !== root && o !== null; o = Object.getPrototypeOf(o)) {
    if (has(o, 'push') || has(o, '_destroy')) return false;
  }
  return true;
}

/** What the middleware reads of a Node stream's `_readableState` (public getters read the same). */
export interface ReadableStateView {
  readonly length: number;
  readonly endEmitted: boolean;
  readonly destroyed: boolean;
  readonly highWaterMark: number;
}

type Push = (this: IncomingMessage, chunk: unknown, encoding?: BufferEncoding) => boolean;
type Destroy = (this: IncomingMessage, error: Error | null, callback: (error?: Error | null) => void) => void;
interface RootMethods {
  push: Push;
  _destroy: Destroy;
}

/** Gives `root` the watching `push` and `_destroy`; each calls what `root` had (its own or inherited) at call time. */
function patchRequestRoot(root: object): RootMethods {
  const r = root as RootMethods;
  const ownPush = has(root, 'push') ? r.push : undefined;
  const ownDestroy = has(root, '_destroy') ? r._destroy : undefined;
  const parent = Object.getPrototypeOf(root) as RootMethods;
  const methods: RootMethods = {
    push(this: IncomingMessage, chunk: unknown, encoding?: BufferEncoding): boolean {
      const watch = rootWatches.get(this);
      if (watch !== undefined && chunk !== null && chunk !== undefined) {
        watch.chunks.push(typeof chunk === 'string' ? Buffer.from(chunk, encoding) : (chunk as Buffer));
      }
      const more = (ownPush ?? parent.push).call(this, chunk, encoding);
      if (watch !== undefined && chunk === null) {
        rootWatches.delete(this);
        const { chunks } = watch;
        watch.done(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks));
      }
      return more;
    },
    _destroy(this: IncomingMessage, error: Error | null, callback: (error?: Error | null) => void): void {
      const watch = rootWatches.get(this);
      if (watch !== undefined && !this.complete) {
        rootWatches.delete(this);
        watch.done('aborted');
      }
      (ownDestroy ?? parent._destroy).call(this, error, callback);
    },
  };
  for (const name of ['push', '_destroy'] as const) {
    Object.defineProperty(root, name, { value: methods[name], writable: true, configurable: true, enumerable: false });
  }
  requestRoots.set(root, methods);
  return methods;
}

/** The `Content-Length` of a request, if it has one that is a plain decimal number. */
function contentLength(headers: IncomingHttpHeaders): number | undefined {
  const value = headers['content-length'];
  return value !== undefined && /^[0-9]{1,15}$/.test(value) ? Number(value) : undefined;
}
