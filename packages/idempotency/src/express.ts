/**
 * Idempotency-Key middleware for Express 4 and 5.
 * @module @holdfast/idempotency/express
 */
import { HoldfastConfigError } from '@holdfast/core';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { HttpIdempotency, type HttpIdempotencyOptions, type RequestView } from './http/index.js';
import { captureNodeResponse, sendRaw } from './http/node.js';

/** Options of the Express middleware: see the README for each, with its default. */
export type ExpressIdempotencyOptions = HttpIdempotencyOptions<Request>;

const OWNER = 'idempotency/express';

/**
 * Idempotency-Key middleware for Express 4 and 5. Mount it after authentication, rate limiting
 * and your body parser, so `scope(req)` knows the caller and the body is part of the fingerprint.
 *
 * @example
 * app.post('/orders', express.json(), idempotency({ store, scope: (req) => req.user.id }), createOrder);
 */
export function idempotency(options: ExpressIdempotencyOptions): RequestHandler {
  const core = new HttpIdempotency<Request>(OWNER, options);
  return (req: Request, res: Response, next: NextFunction) => {
    if (!core.guards(req.method)) return next();
    if (req.body === undefined && hasBody(req)) return next(unparsedBody());
    core.decide(req, viewOf(req)).then((decision) => {
      if (decision.action === 'pass') return next();
      if (decision.action === 'respond') return sendRaw(res, decision.response);
      captureNodeResponse(res, decision.run);
      next();
    }, next);
  };
}

function viewOf(req: Request): RequestView {
  return { method: req.method, url: req.originalUrl, headers: req.headers, body: req.body };
}

function hasBody(req: Request): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

function unparsedBody(): HoldfastConfigError {
  return new HoldfastConfigError(OWNER, [
    {
      path: '',
      message:
        'is mounted before a body parser: the request body is not read yet, so it cannot be part of the ' +
        'fingerprint. Mount express.json(), express.raw() or express.text() first',
      value: undefined,
    },
  ]);
}
