/**
 * Idempotency-Key middleware for Express 4 and 5.
 * @module @holdfast/idempotency/express
 */
import type { Buffer } from 'node:buffer';
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { HoldfastConfigError } from '@holdfast/core';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { type BodyRead, bodyOf, captureRawBody, discardRest, readBody, streamOf } from './http/body.js';
import type { BodyCollector } from './http/capture.js';
import {
  type Decision,
  HttpIdempotency,
  type HttpIdempotencyOptions,
  type KeyHeader,
  NodeRequestView,
  problem,
  type Run,
} from './http/index.js';
import { captureNodeResponse, type Ending, headersSent, sendRaw } from './http/node.js';
import { UnreadableUploadError, uploadsFingerprinted, uploadsOf } from './http/uploads.js';

/** Options of the Express middleware: see the README for each, with its default. */
export type ExpressIdempotencyOptions = HttpIdempotencyOptions<Request>;

export { captureRawBody };

/**
 * The keys a request holds: one middleware mounted app-wide and another on a router, on the
 * same store, asked that store again for the key the first had claimed for the same request,
 * answered it with its own 409 in-progress, and the first stored it. Kept for every claimed
 * request, not only once a second middleware was made: one middleware mounted twice on a
 * request's path (`app.use(guard)` and `app.post(path, guard, ...)`) did the same to itself.
 */
const holding = new WeakMap<object, Run[]>();

const OWNER = 'idempotency/express';

/**
 * Idempotency-Key middleware for Express 4 and 5. Mount it after authentication and rate
 * limiting, and before your body parsers (it reads the body's bytes and puts them back), or
 * after them with `verify: captureRawBody`.
 *
 * @example
 * app.post('/orders', idempotency({ store, scope: (req) => req.user.id }), express.json(), createOrder);
 */
export function idempotency(options: ExpressIdempotencyOptions): RequestHandler {
  const core = new HttpIdempotency<Request>(OWNER, options);
  const limit = core.options.maxRequestBytes;
  // What to do once the body's bytes are known: answered at once when the store can.
  // `unread`: the body was read here, and the parsers after us have yet to read it.
  const handle = (
    req: Request,
    res: Response,
    next: NextFunction,
    header: KeyHeader,
    bytes: BodyRead,
    unread: boolean,
    headers: IncomingHttpHeaders,
  ): void => {
    if (bytes === 'aborted') {
      hangUp(res); // the client left before sending its body: nobody to answer
      return;
    }
    if (bytes === 'tooLarge') {
      discardRest(req, limit);
      sendRaw(res, problem('tooLarge'));
      return;
    }
    const view = new NodeRequestView(req.method, req.originalUrl, headers, bytes, req);
    // The runs of the passes before this one (read once: a request passes one layer at a time).
    const held = holding.get(req);
    const act = (decision: Decision): void => {
      // A timeout middleware answered while the body was read or the store asked: nothing runs.
      if (headersSent(res)) {
        if (decision.action === 'run') void decision.run.abandon('E_INCOMPLETE');
        return;
      }
      if (decision.action === 'respond') sendRaw(res, decision.response);
      else {
        if (decision.action === 'run') {
          // The client left while the store answered: body parsers skip a request whose
          // connection is gone, so the handler would run without the body and its answer be
          // stored for the key. Nobody is there to answer: the key is released.
          if (unread && connectionGone(req)) {
            decision.run.abandon('E_INCOMPLETE');
            hangUp(res);
            return;
          }
          captureNodeResponse(res, decision.run, ending);
          if (held === undefined) holding.set(req, [decision.run]);
          else held.push(decision.run);
        }
        next();
      }
    };
    const decided = core.decideNow(req, view, header, held);
    if (decided instanceof Promise) decided.then(act).catch(next);
    else act(decided);
  };
  return (req: Request, res: Response, next: NextFunction) => {
    if (!core.guards(req.method)) return next();
    // Read once for the request: Node's `headers` is a getter, and an Express request (a map of
    // its own) looks it up along its prototype chain at each read; it was read six times (the
    // key, the body's presence and length, the view). Under callgrind (bench/http-instructions.ts,
    // medians of 8 windows) first requests went 775k -> 767k instructions, replays 520k -> 519k:
    // within what two runs differ by, a small part of an Express request.
    const headers = req.headers;
    // A request without a valid key is passed or refused without reading its body.
    const header = core.key(req, headers);
    if (core.passes(header)) return next();
    const known = header.status === 'ok' ? bodyOf(req, headers) : ({ status: 'bytes', body: undefined } as const);
    if (known.status === 'gone') {
      return next(
        new HoldfastConfigError(OWNER, [
          {
            path: 'body',
            message:
              'was read by a middleware before this one and kept nowhere it can see (req.body): it cannot be fingerprinted. Mount idempotency() before that middleware, or have it keep the bytes (verify: captureRawBody)',
          },
        ]),
      );
    }
    if (known.status === 'unread') {
      readBody(
        req,
        limit,
        (bytes) => {
          try {
            handle(req, res, next, header, bytes, true, headers);
          } catch (error) {
            next(error);
          }
        },
        headers,
      );
      return;
    }
    // An upload parser before us (multer) took the files out of the body: their content is part
    // of it, or another file under the same key would replay this one's response.
    const uploads = known.status === 'parsed' ? uploadsOf(req) : undefined;
    if (uploads !== undefined) {
      uploadsFingerprinted(known.body, uploads, unreadableUpload)
        .then((body) => handle(req, res, next, header, body as Buffer, false, headers))
        .catch((error: unknown) => {
          // A file on disk gone before it was read (a tmp cleaner): the server's fault, answered
          // as such, without its path; nothing was claimed or run.
          if (!(error instanceof UnreadableUploadError)) return next(error);
          sendRaw(
            res,
            problem('uploadUnreadable', {
              detail: `The file of field ${JSON.stringify(error.field.slice(0, 100))} could not be read back`,
            }),
          );
        });
      return;
    }
    try {
      handle(req, res, next, header, known.body as Buffer | undefined, false, headers);
    } catch (error) {
      next(error);
    }
  };
}

/** A file an upload parser before us kept neither in memory nor on disk: its content cannot be compared. */
function unreadableUpload(field: string): HoldfastConfigError {
  return new HoldfastConfigError(OWNER, [
    {
      path: 'body',
      message: `has a file (field ${JSON.stringify(field.slice(0, 100))}) that a middleware before this one stored neither in memory (buffer) nor on disk (path): its content cannot be fingerprinted. Mount idempotency() before that middleware, or give it multer's memoryStorage() or diskStorage()`,
    },
  ]);
}

/**
 * Ends the response of a request dropped because its client left. Nobody reads it, but whoever
 * waits for it to end learns the request is over: a load shedder in front (`@holdfast/limit`)
 * held the request's place until it did, for `holdAfterHangUp` (10 s), though nothing ran.
 */
function hangUp(res: Response): void {
  if (res.writableEnded) return;
  // What an access log then shows: nginx's "client closed request", not a 200 for what never ran.
  if (!res.headersSent) res.statusCode = 499;
  res.end();
}

/**
 * Whether a request was destroyed (its client reset, a server timeout) before anyone read its
 * body to the end: body parsers then skip it (body-parser asks `on-finished`), leaving `req.body`
 * unset. (A body read to its end here, an empty one, is destroyed once it ended: not gone.)
 */
function connectionGone(req: Request): boolean {
  const stream = streamOf(req);
  return stream.destroyed && !stream.endEmitted;
}

/**
 * What a finished response is when it is not the handler's own. A 5xx sent once a timeout
 * middleware timed the request out (connect-timeout sets `req.timedout`, and answers from its
 * `timeout` event) went out while the handler may still run, and Express gives no sign of its
 * end: it is stored as the key's answer, whatever its status, so a retry never runs the handler
 * beside the first or after it. With nobody answering that event (connect-timeout's `respond:
 * false`), the app's own answer is its handler's, stored or released as any. The router's own
 * 404 is released.
 */
const ending: Ending = (status, res, body) => {
  if (status >= 500) return timedOut(res) ? 'outlived' : undefined;
  return status === 404 && routerNotFound(res, body) ? 'release' : undefined;
};

/** A timeout middleware timed the request out and answered (see {@link ending}). */
function timedOut(res: ServerResponse): boolean {
  const req = (res as Response).req as (Request & { timedout?: unknown }) | undefined;
  return req?.timedout === true && req.listenerCount('timeout') > 0;
}

/**
 * Whether a 404 is Express's own for a path no route served: its final handler, `finalhandler`,
 * answers in HTML with `Content-Security-Policy: default-src 'none'`, a page that says "Cannot
 * POST /path", and the router reached no route (`req.route`, set as a route is entered, is
 * unset; a HEAD's page is not sent, so its headers alone). It is not stored: the key is
 * released, so a retry once the route exists (a rolling deploy) runs it, as Fastify skips
 * unmatched routes. A 404 your handler sends is stored like
 * any other response: on an API that sends that policy on every response (its 404s are not
 * HTML), from an app whose own pages are HTML under that policy (not that page), and from a
 * route's handler that passed the request on to the final handler (a route was reached).
 */
function routerNotFound(res: ServerResponse, body: BodyCollector): boolean {
  const req = (res as Response).req as Request | undefined;
  if (
    req === undefined ||
    req.route !== undefined ||
    res.getHeader('content-security-policy') !== "default-src 'none'" ||
    res.getHeader('content-type') !== 'text/html; charset=utf-8'
  ) {
    return false;
  }
  // A HEAD's page is not sent (finalhandler ends it empty): its headers are all there is. A
  // HEAD is safe to run again, so an app's own such page released costs nothing.
  return req.method === 'HEAD' || body.bytes().includes(`<pre>Cannot ${req.method} `);
}
