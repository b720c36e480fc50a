/**
 * Load-shedding middleware for Express 4 and 5.
 * @module @holdfast/limit/express
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { type LoadSheddingOptions, Shedder } from './http.js';

/** Options of the Express middleware. */
export type ExpressLoadSheddingOptions = LoadSheddingOptions<Request>;

/**
 * Admits each request through a policy (a bulkhead, a rate limiter, an adaptive limiter, a
 * throttle, or a pipeline of them) and answers the ones it refuses at once: 429 for a rate
 * limit, 503 for overload, with `Retry-After` and an `application/problem+json` body. A request
 * holds its place until its response ends or its client goes away (while its handler may still
 * run, at most `holdAfterHangUp` longer).
 *
 * @example
 * app.use('/api', loadShedding({ policy: tokenBucket({ limit: 50 }), key: (req) => ipKey(req.ip) }));
 * app.post('/reports', loadShedding({ policy: bulkhead({ maxConcurrent: 4, maxQueue: 10 }) }), render);
 */
export function loadShedding(options: ExpressLoadSheddingOptions): RequestHandler {
  // A timeout middleware answered while the handler runs (connect-timeout sets req.timedout and
  // answers from its 'timeout' event; with `respond: false` nobody listens, and the app's answer
  // is its handler's): Express shows no end of the handler, so the place is held for holdAfterHangUp.
  const shedder = new Shedder<Request>(
    'limit/express',
    options,
    (req) => (req as { timedout?: unknown }).timedout === true && req.listenerCount('timeout') > 0,
  );
  return (req: Request, res: Response, next: NextFunction) => {
    shedder.hold(req, res).then((outcome) => {
      if (outcome === true) return next();
      // A client that left gets nothing: its socket is closed.
      if (!res.destroyed && !res.headersSent) res.status(outcome.status).set(outcome.headers).send(outcome.body);
    }, next);
  };
}
