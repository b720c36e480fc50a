/**
 * Idempotency-Key middleware for Express 4 and 5.
 * @module @holdfast/idempotency/express
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { bodyOf, captureRawBody, readAndRestore } from './http/body.js';
import { HttpIdempotency, type HttpIdempotencyOptions, problem } from './http/index.js';
import { captureNodeResponse, sendRaw } from './http/node.js';

/** Options of the Express middleware: see the README for each, with its default. */
export type ExpressIdempotencyOptions = HttpIdempotencyOptions<Request>;

export { captureRawBody };

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
  return (req: Request, res: Response, next: NextFunction) => {
    if (!core.guards(req.method)) return next();
    // A request without a valid key is passed or refused without reading its body.
    const known = core.key(req).status === 'ok' ? bodyOf(req) : ({ status: 'bytes', body: undefined } as const);
    const body =
      known.status === 'unread' ? readAndRestore(req, limit) : Promise.resolve(known.body as Buffer | undefined);
    body
      .then((bytes) => {
        if (bytes === 'aborted') return; // the client left before sending its body: nobody to answer
        if (bytes === 'tooLarge') return sendRaw(res, problem('tooLarge'));
        const view = { method: req.method, url: req.originalUrl, headers: req.headers, body: bytes };
        return core.decide(req, view).then((decision) => {
          if (decision.action === 'pass') return next();
          if (decision.action === 'respond') return sendRaw(res, decision.response);
          captureNodeResponse(res, decision.run);
          next();
        });
      })
      .catch(next);
  };
}
