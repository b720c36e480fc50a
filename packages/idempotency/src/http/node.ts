import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { HttpResponse } from './capture.js';
import type { OutgoingHeaders, Run } from './engine.js';

/** Sends a response the middleware made (a replay or a problem) on a raw Node response. */
export function sendRaw(res: ServerResponse, response: HttpResponse): void {
  res.writeHead(response.status, response.headers as OutgoingHttpHeaders);
  res.end(response.body);
}

type Write = ServerResponse['write'];
type End = ServerResponse['end'];
type WriteHead = ServerResponse['writeHead'];

/**
 * Watches a Node response for `run`: every byte given to `write` and `end` is collected, and
 * the final `end` waits until the response is stored (or its key released), so a client that
 * got the response and retries gets the replay.
 *
 * - Headers are taken as the handler set them, when they are first written: a layer mounted
 *   before the middleware (compression) that adds `Content-Encoding` below us is not recorded
 *   with a body it has not encoded yet.
 * - A response closed before the handler ended it by the server itself (the handler threw after
 *   the headers and Express destroyed the socket, a stream failed) releases the key.
 * - A response closed by its client after it started (headers sent: a stream piped to it, a
 *   file, a handler that stops when the client leaves) can never complete: its key is
 *   released, nothing is stored, and a retry runs again.
 * - A client that disconnects before the response started changes nothing: the handler still
 *   runs to its `end`, which stores the result, so a retry gets 409 then the replay. (A handler
 *   that stops there without calling `end` keeps its key claimed until the lease runs out.)
 * - `unstored(status, headers)`, when true, releases the key of a finished response instead
 *   of storing it (Express: the router's own 404 for a path no route served).
 */
export function captureNodeResponse(
  res: ServerResponse,
  run: Run,
  unstored?: (status: number, headers: OutgoingHeaders) => boolean,
): void {
  const write = res.write as (...args: unknown[]) => boolean;
  const end = res.end as (...args: unknown[]) => ServerResponse;
  const writeHead = res.writeHead as (...args: unknown[]) => ServerResponse;
  let headers: OutgoingHeaders | undefined;
  const snapshot = (explicit?: OutgoingHeaders) => {
    if (headers === undefined)
      headers = explicit === undefined ? res.getHeaders() : { ...res.getHeaders(), ...explicit };
    return headers;
  };

  res.writeHead = function (this: ServerResponse, ...args: unknown[]) {
    // Headers given to writeHead() are not always visible to getHeaders(): keep them.
    snapshot(headersOf(args.find((a) => typeof a === 'object' && a !== null)));
    return writeHead.apply(this, args);
  } as WriteHead;

  res.write = function (this: ServerResponse, chunk: unknown, ...rest: unknown[]) {
    run.body.add(chunk, encodingOf(rest[0]));
    return write.call(this, chunk, ...rest);
  } as Write;

  // Set while the response is being stored: a second end() waits its turn behind the first.
  let storing: Promise<unknown> | undefined;
  res.end = function (this: ServerResponse, ...args: unknown[]) {
    if (storing !== undefined) {
      storing = storing.then(() => end.apply(this, args));
      return this;
    }
    if (run.settled) return end.apply(this, args);
    const chunk = typeof args[0] === 'function' ? undefined : args[0];
    run.body.add(chunk, encodingOf(args[1]));
    const status = this.statusCode;
    const settle = unstored?.(status, snapshot()) ? run.abandon(`HTTP_${status}`) : run.finish(status, snapshot());
    storing = settle.then(() => end.apply(this, args));
    return this;
  } as End;

  const socket = res.socket;
  res.once('close', () => {
    if (run.settled) return;
    const clientLeft = socket !== null && (socket.readableEnded || socket.errored !== null);
    if (!clientLeft || res.headersSent) void run.abandon('E_INCOMPLETE');
  });
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
