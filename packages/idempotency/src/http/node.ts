import { type IncomingMessage, type OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { allowedHeaders, type BodyCollector, type HttpResponse } from './capture.js';
import type { OutgoingHeaders, Run } from './engine.js';

/**
 * The status a response has sent, once its headers went: read from its status line as sent
 * (Node keeps it as `_header`), or on HTTP/2 from the headers its stream sent (`:status`), as
 * `statusCode` may have been set since (Fastify's error handler sets 500 on a response whose
 * handler wrote its 201 and threw: over HTTP/2 the key was released, and the retry ran again).
 */
export function sentStatus(res: ServerResponse): number | undefined {
  if (!res.headersSent) return undefined;
  const head = (res as { _header?: unknown })._header;
  if (typeof head === 'string' && /^HTTP\/\d\.\d \d{3} /.test(head)) return Number(head.slice(9, 12));
  const sent = Number((res as { stream?: { sentHeaders?: Record<string, unknown> } }).stream?.sentHeaders?.[':status']);
  return sent >= 100 && sent <= 999 ? sent : res.statusCode;
}

/**
 * `res.headersSent`, read from Node's own `_header` where the response has it (the getter reads
 * the same): on an Express response (a map of its own) the getter was looked up along its
 * prototype chain, then `_header` again inside it, on every guarded request. A response without
 * it (not Node's) is asked through its getter.
 */
export function headersSent(res: ServerResponse): boolean {
  const head = (res as { _header?: unknown })._header;
  return head === undefined ? res.headersSent : Boolean(head);
}

/**
 * Sends a response the middleware made (a replay or a problem) on a raw Node response: an ASCII
 * replay's text as it is (its UTF-8 is its bytes; Node writes it with the head, and no Buffer is made).
 */
export function sendRaw(res: ServerResponse, response: HttpResponse): void {
  res.writeHead(response.status, response.headers as OutgoingHttpHeaders);
  res.end(response.text ?? response.body);
}

type Method = (this: ServerResponse, ...args: unknown[]) => unknown;

/**
 * The capture of each watched response. A map, not a property on the response: Express gives
 * every request and response a map of its own (it swaps their prototypes), so adding a property
 * copies all of the object's property descriptors (1.5 KB and a slow lookup per response).
 */
const captures = new WeakMap<ServerResponse, Capture>();

/**
 * Watches a Node response for `run`: every byte given to `write` and `end` is collected, and
 * the final `end` waits until the response is stored (or its key released), so a client that
 * got the response and retries gets the replay.
 *
 * - Headers are taken as the handler set them, when they are first written: a layer mounted
 *   before the middleware (compression) that adds `Content-Encoding` below us is not recorded
 *   with a body it has not encoded yet.
 * - A response closed by the server itself once it began (the handler threw after the headers
 *   and Express destroyed the socket, a stream failed) will never end, and its handler's effect
 *   may have happened: the response-lost problem is stored at once ({@link Run.lost}: a 5xx
 *   sent, or a safe method, is released). One closed before it began (a socket timeout, a
 *   pipelined neighbour's failure) is taken as its client leaving.
 * - A response closed by its client before its end (started or not) is stored whole if the
 *   handler still ends it, so a retry gets 409 then the replay. One it never ends (a handler that
 *   stops when the client leaves) gets the response-lost problem shortly before its lease runs
 *   out ({@link Run.lostUnlessEnded}); one a stream was piped to (a pipeline, a file), which
 *   nothing will end, at once: the handler ran, and a retry must not run it again (the key was
 *   released, and it did).
 * - `ending(status, res, body)` says what a finished response is when it is not the handler's own:
 *   `'release'` releases its key instead of storing it (Express: the router's own 404 for a path
 *   no route served); `'outlived'`, an answer sent while the handler may still run (a timeout
 *   middleware's 5xx), is stored whatever its status (see {@link Run.finishAfter}).
 *
 * How: Express gives each response its app's prototype, whose chain ends in Express's own
 * response object, then Node's. That object (the root) gets `writeHead`, `write` and `end`
 * once, which watch the responses that carry a capture and pass the others straight through;
 * each response then only gets its capture. Express swaps the prototype of a response that
 * enters or leaves a mounted sub-app, but every app's chain holds the root, so the watch stays.
 * (Methods set on each response instead cost several microseconds a response: Express has
 * already swapped its prototype.) A response without such a root, one whose methods a layer
 * before us replaced on the response itself, or one watched twice, gets its own methods.
 */
export function captureNodeResponse(res: ServerResponse, run: Run, ending?: Ending): void {
  const capture = new Capture(run, ending);
  const root = rootOf(res, NODE_RESPONSE);
  if (root !== undefined && !captures.has(res) && !ownsMethods(res)) {
    if (!patched.has(root)) patchRoot(root);
    captures.set(res, capture);
  } else {
    patchInstance(res, capture);
  }
  const socket = res.socket;
  // The response's socket is its request's (its connection), once it has one: read through the
  // request only for a pipelined response that has none yet.
  watchTimeout(socket ?? (res as { req?: IncomingMessage }).req?.socket);
  // A pipelined response queued behind another on its connection has no socket yet, and gets
  // no 'close' if the connection goes first: its connection's close says its client left.
  if (socket === null) queueBehind(res, () => run.lostUnlessEnded(() => sentStatus(res)));
  // 'close' comes once: `on` spares the wrapper `once` makes per response.
  res.on('close', () => {
    if (run.settled) return;
    // A pipelined response's socket is the one it got after it was queued.
    const clientLeft = leftOrTimedOut(socket ?? res.socket);
    // Closed by the server once the response began (the handler threw after its headers, a
    // stream failed): its effect may have happened, and it will never end: lost (a retry ran the
    // handler again). Before it began, the handler may still run (a socket timeout, a pipelined
    // request's failure that took the connection): as if its client left.
    if (!clientLeft && res.headersSent) void run.lost(sentStatus(res));
    // By its client, with a stream piped to it (`pipe`, `pipeline`, `res.sendFile`): the stream
    // is unpiped or destroyed now, and will never end it.
    else if (res.listenerCount('unpipe') > 0) void run.lost(sentStatus(res));
    // By its client: the handler may have made its effect, and may still end the response.
    else run.lostUnlessEnded(() => sentStatus(res));
  });
}

/**
 * Whether a connection closed under a handler that may still run: its client left, or its idle
 * timeout destroyed it (see {@link watchTimeout}), not the handler or the server otherwise.
 */
export function leftOrTimedOut(socket: Socket | null): boolean {
  return socket !== null && (socket.readableEnded || socket.errored !== null || timedOut.has(socket));
}

/** Connections watched for their idle timeout, and those Node destroyed when it fired. */
const timeoutWatched = new WeakSet<Socket>();
const timedOut = new WeakSet<Socket>();

/**
 * Notes when a connection is destroyed by its idle timeout (`server.setTimeout()`, or
 * `res.setTimeout()` set later by the handler): one listener a connection, on its first watched
 * response. Node's own listener, called first, destroyed it unless a listener of the request,
 * response or server took the timeout: the connection then stays, and what closes it later is
 * not the timeout.
 */
function watchTimeout(connection: Socket | undefined): void {
  if (!connection || timeoutWatched.has(connection)) return;
  timeoutWatched.add(connection);
  connection.on('timeout', () => connection.destroyed && timedOut.add(connection));
}

/** Per connection, its pipelined responses that have no socket yet: what to do if it closes first. */
const queued = new WeakMap<Socket, Map<() => void, ServerResponse>>();

/**
 * Calls `left` if the connection of a response Node has queued (HTTP/1.1 pipelining) closes
 * before the response got it: the client left while its handler ran, as for a response of its
 * own. One listener a connection, however deep the queue; a response that closes first (it got
 * the socket, whose own 'close' decides) is forgotten.
 */
export function queueBehind(res: ServerResponse, left: () => void): void {
  const connection = (res as { req?: IncomingMessage }).req?.socket;
  if (!connection) return;
  // Closed already (before the response was watched: its claim or a hook was waited for): its
  // 'close' came, and no other will.
  if (connection.closed) {
    left();
    return;
  }
  let waiting = queued.get(connection);
  if (!waiting) {
    const all = new Map<() => void, ServerResponse>();
    queued.set(connection, (waiting = all));
    connection.once('close', () => {
      for (const [call, response] of all) if (!response.socket) call();
    });
  }
  waiting.set(left, res);
  res.once('close', () => waiting.delete(left));
}

/** One response's watch: its headers as first written, its body, and its (deferred) end. */
class Capture {
  #headers: OutgoingHeaders | undefined;
  // Set once the response has ended and its end waits while it is stored. Until then it shows no
  // headers sent, and another layer may answer it too (a timeout middleware's 503): that answer
  // is dropped, and the response goes as the handler ended it, status and headers included.
  // (Sent as well, the second answer's body was written after the end: an error no one
  // listens to, which ends the process.)
  #held = false;

  constructor(
    readonly run: Run,
    readonly ending: Ending | undefined,
  ) {}

  /** Runs the response's `writeHead` (the layers below and Node's), the headers taken before. */
  writeHead(res: ServerResponse, args: unknown[], writeHead: Method): unknown {
    if (this.#held) return res;
    if (this.#headers !== undefined) return writeHead.apply(res, args);
    // Headers given to writeHead() are not always visible to getHeader(): keep them.
    const explicit = headersOf(args.find((a) => typeof a === 'object' && a !== null));
    const headers = this.#snapshot(res, explicit);
    const result = writeHead.apply(res, args);
    // Once a header was set, Node applies the ones given to writeHead() to the response's headers
    // as it sends them, its own way (on Node 20 a name given twice in a flat list keeps its last
    // value): for those names, what the response shows now is what was sent.
    if (explicit !== undefined) {
      for (const name of Object.keys(explicit)) {
        if (!Object.hasOwn(headers, name)) continue;
        const sent = res.getHeader(name);
        if (sent !== undefined) headers[name] = Array.isArray(sent) ? [...sent] : sent;
      }
    }
    return result;
  }

  write(res: ServerResponse, args: unknown[], write: Method): unknown {
    if (this.#held) return true;
    this.run.body.add(args[0], encodingOf(args[1]));
    return write.apply(res, args);
  }

  end(res: ServerResponse, args: unknown[], end: Method): unknown {
    if (this.#held) return res;
    const { run } = this;
    if (run.settled) return end.apply(res, args);
    const chunk = typeof args[0] === 'function' ? undefined : args[0];
    run.body.add(chunk, encodingOf(args[1]));
    const status = res.statusCode;
    const headers = this.#snapshot(res);
    const how = this.ending?.(status, res, run.body);
    const settle =
      how === 'release'
        ? run.abandon(`HTTP_${status}`)
        : how === 'outlived'
          ? run.finishAfter(status, headers, undefined)
          : run.finish(status, headers);
    // An in-process store has the record already: the response ends now.
    if (run.atOnce) return end.apply(res, args);
    const head = res.headersSent ? undefined : headOf(res);
    this.#held = true;
    settle.then(() => {
      this.#held = false;
      if (head !== undefined && !res.headersSent) restoreHead(res, head);
      end.apply(res, args);
    });
    return res;
  }

  /** The headers a record may keep, as they are now, once: when first written, else at the end. */
  #snapshot(res: ServerResponse, explicit?: Record<string, string | string[]>): OutgoingHeaders {
    this.#headers ??= allowedHeaders(res, this.run.replayable, explicit);
    return this.#headers;
  }
}

/** A response's status and headers (their names as set) before they are sent. */
interface Head {
  readonly status: number;
  readonly message: string;
  readonly headers: readonly (readonly [string, number | string | string[]])[];
}

function headOf(res: ServerResponse): Head {
  const headers: [string, number | string | string[]][] = [];
  // Node 15.13 has it; the types this package builds with do not show it.
  for (const name of (res as ServerResponse & { getRawHeaderNames(): string[] }).getRawHeaderNames()) {
    const value = res.getHeader(name);
    if (value !== undefined) headers.push([name, value]);
  }
  return { status: res.statusCode, message: res.statusMessage, headers };
}

/** Puts back a response's status and headers as {@link headOf} took them. */
function restoreHead(res: ServerResponse, head: Head): void {
  for (const name of res.getHeaderNames()) res.removeHeader(name);
  for (const [name, value] of head.headers) res.setHeader(name, value);
  res.statusCode = head.status;
  res.statusMessage = head.message;
}

/** What a finished response is when it is not simply the handler's own: see {@link captureNodeResponse}. */
export type Ending = (status: number, res: ServerResponse, body: BodyCollector) => 'release' | 'outlived' | undefined;

const NODE_RESPONSE = ServerResponse.prototype;
const METHODS = ['writeHead', 'write', 'end'] as const;
const patched = new WeakSet<object>();

/**
 * The last prototype before Node's (`base`) in an object's chain: Express's own request or
 * response object, if there is one.
 */
export function rootOf(object: object, base: object): object | undefined {
  let proto: object | null = Object.getPrototypeOf(object);
  if (proto === base) return undefined;
  while (proto !== null) {
    const up: object | null = Object.getPrototypeOf(proto);
    if (up === base) return proto;
    proto = up;
  }
  return undefined;
}

function ownsMethods(res: ServerResponse): boolean {
  return Object.hasOwn(res, 'writeHead') || Object.hasOwn(res, 'write') || Object.hasOwn(res, 'end');
}

/** Gives `root` the watching methods; each calls what `root` had (its own or inherited) at call time. */
function patchRoot(root: object): void {
  patched.add(root);
  const own = (name: (typeof METHODS)[number]): Method | undefined =>
    Object.hasOwn(root, name) ? ((root as Record<string, unknown>)[name] as Method) : undefined;
  const ownWriteHead = own('writeHead');
  const ownWrite = own('write');
  const ownEnd = own('end');
  const parent = Object.getPrototypeOf(root) as Record<(typeof METHODS)[number], Method>;
  const methods: Record<(typeof METHODS)[number], Method> = {
    writeHead(...args) {
      const capture = captures.get(this);
      const writeHead = ownWriteHead ?? parent.writeHead;
      return capture === undefined ? writeHead.apply(this, args) : capture.writeHead(this, args, writeHead);
    },
    write(...args) {
      const capture = captures.get(this);
      const write = ownWrite ?? parent.write;
      return capture === undefined ? write.apply(this, args) : capture.write(this, args, write);
    },
    end(...args) {
      const capture = captures.get(this);
      const end = ownEnd ?? parent.end;
      return capture === undefined ? end.apply(this, args) : capture.end(this, args, end);
    },
  };
  for (const name of METHODS) {
    Object.defineProperty(root, name, { value: methods[name], writable: true, configurable: true, enumerable: false });
  }
}

/** Sets the watching methods on the response itself, around the ones it has now. */
function patchInstance(res: ServerResponse, capture: Capture): void {
  const writeHead = res.writeHead as Method;
  const write = res.write as Method;
  const end = res.end as Method;
  res.writeHead = function (this: ServerResponse, ...args: unknown[]) {
    return capture.writeHead(this, args, writeHead);
  } as ServerResponse['writeHead'];
  res.write = function (this: ServerResponse, ...args: unknown[]) {
    return capture.write(this, args, write);
  } as ServerResponse['write'];
  res.end = function (this: ServerResponse, ...args: unknown[]) {
    return capture.end(this, args, end);
  } as ServerResponse['end'];
}

function encodingOf(value: unknown): BufferEncoding | undefined {
  return typeof value === 'string' ? (value as BufferEncoding) : undefined;
}

function headersOf(value: unknown): Record<string, string | string[]> | undefined {
  if (value === undefined) return undefined;
  const out: Record<string, string | string[]> = {};
  if (Array.isArray(value)) {
    // Either [[name, value], ...] or a flat [name, value, name, value, ...].
    const pairs: unknown[][] = Array.isArray(value[0]) ? value : [];
    if (pairs.length === 0) for (let i = 0; i + 1 < value.length; i += 2) pairs.push([value[i], value[i + 1]]);
    for (const [name, v] of pairs) {
      const key = String(name).toLowerCase();
      const prev = out[key];
      out[key] = prev === undefined ? String(v) : [prev, String(v)].flat();
    }
    return out;
  }
  for (const [name, v] of Object.entries(value as Record<string, unknown>)) {
    if (v !== undefined) out[name.toLowerCase()] = Array.isArray(v) ? v.map(String) : String(v);
  }
  return out;
}
