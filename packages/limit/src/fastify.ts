/**
 * Load-shedding plugin for Fastify 5.
 * @module @holdfast/limit/fastify
 */
import { ownPluginOptions } from '@holdfast/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type LoadSheddingOptions, Shedder } from './http.js';

/** Options of the Fastify plugin. */
export type FastifyLoadSheddingOptions = LoadSheddingOptions<FastifyRequest>;

/**
 * Admits each request through a policy (a bulkhead, a rate limiter, an adaptive limiter, a
 * throttle, or a pipeline of them) in `onRequest`, before the body is read, and answers the
 * ones it refuses at once: 429 for a rate limit, 503 for overload, with `Retry-After` and an
 * `application/problem+json` body. Registered as it is, it covers every route of the instance
 * (it is not encapsulated); per route, pass `policy: (req) => ...` and look at
 * `req.routeOptions.url`.
 *
 * @example
 * await app.register(loadShedding, { policy: adaptiveConcurrency({ algorithm: 'gradient2' }) });
 */
export async function loadShedding(fastify: FastifyInstance, options: FastifyLoadSheddingOptions): Promise<void> {
  // What Fastify's register() itself reads is not ours to check; anything else is (a typo is an error).
  const ours = ownPluginOptions(options);
  // Fastify's handlerTimeout answers while the handler runs: its place is held until the handler
  // settles. Its handler's promise (true: none) is kept for routes with a handler timeout that
  // onRoute saw (marked in their config). A route declared before the plugin loaded (register not
  // awaited) is not: its end cannot be seen, and its place is held for holdAfterHangUp.
  const handlers = new WeakMap<FastifyRequest, PromiseLike<unknown> | true>();
  const later = new WeakSet<FastifyRequest>();
  const seen = Symbol('holdfast.limit.route');
  const server = fastify.initialConfig as { handlerTimeout?: number };
  // Only a route with a handler timeout can have been answered by one; Fastify makes request.signal
  // (an AbortController and a listener) on first read for a route without, so it is not read there.
  const everyRoute = (server.handlerTimeout ?? 0) > 0;
  const timedOut = (request: FastifyRequest) =>
    (everyRoute || ((request.routeOptions as { handlerTimeout?: number }).handlerTimeout ?? 0) > 0) && aborted(request);
  const shedder = new Shedder<FastifyRequest>('limit/fastify', ours, (request, res) => {
    const running = handlers.get(request);
    if (running !== undefined) return timedOut(request) && (later.has(request) || running);
    // Not called (a later hook was answered first), or not watched. (A response the timeout
    // destroyed, its headers sent, has not ended: its status is the handler's.)
    if ((res.writableEnded && res.statusCode < 500) || !timedOut(request)) return false;
    return (request.routeOptions.config as unknown as Record<symbol, unknown> | undefined)?.[seen] !== true;
  });
  fastify.addHook('onRoute', (route) => {
    if (!((route.handlerTimeout ?? server.handlerTimeout ?? 0) > 0) || typeof route.handler !== 'function') return;
    const handler = route.handler;
    route.config = { ...route.config, [seen]: true } as typeof route.config;
    route.handler = function (this: FastifyInstance, request, reply) {
      // A handler that returns (or awaits) the reply sends it later, from work its promise does
      // not cover (it settles as the response ends): its end cannot be seen.
      const then = reply.then;
      // biome-ignore lint/suspicious/noThenProperty: the reply is a thenable already; this one notes who awaits it
      reply.then = function (this: FastifyReply, fulfilled, rejected) {
        later.add(request);
        return then.call(this, fulfilled, rejected);
      };
      const result = handler.call(this, request, reply);
      const thenable = typeof (result as PromiseLike<unknown> | undefined)?.then === 'function';
      handlers.set(request, thenable ? (result as PromiseLike<unknown>) : true);
      return result;
    };
  });
  fastify.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    const outcome = await shedder.hold(request, reply.raw);
    if (outcome === true) return;
    // Answered while it waited (its handler timeout): the handler does not run.
    if (reply.sent) return;
    // Sent even to a client that left: a reply is what stops Fastify running the handler.
    return reply.code(outcome.status).headers(outcome.headers).send(outcome.body);
  });
}

/** The request's signal was aborted by Fastify's handlerTimeout. (`signal` is made on first read.) */
function aborted(request: FastifyRequest): boolean {
  const signal = request.signal as AbortSignal | undefined; // none on an older Fastify 5
  return (
    signal?.aborted === true && (signal.reason as { code?: unknown } | undefined)?.code === 'FST_ERR_HANDLER_TIMEOUT'
  );
}

// What fastify-plugin does, without the dependency: the hooks reach every route of the instance.
const meta = loadShedding as unknown as Record<symbol, unknown>;
meta[Symbol.for('skip-override')] = true;
meta[Symbol.for('fastify.display-name')] = '@holdfast/limit';
