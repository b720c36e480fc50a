/**
 * Idempotency-Key plugin for Fastify 5.
 * @module @holdfast/idempotency/fastify
 */
import { Transform } from 'node:stream';
import { HoldfastConfigError } from '@holdfast/core';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import {
  HttpIdempotency,
  type HttpIdempotencyOptions,
  type OutgoingHeaders,
  type RouteIdempotencyOptions,
  type Run,
} from './http/index.js';
import { asNodeStream, teeStream } from './http/stream.js';

/** Options of the Fastify plugin: see the README for each, with its default. */
export type FastifyIdempotencyOptions = HttpIdempotencyOptions<FastifyRequest>;

/**
 * A route's `config.idempotency`: `false` turns the plugin off for it, `true` guards it with the
 * plugin's options, an object guards it with options that differ.
 */
export type FastifyRouteIdempotency = boolean | RouteIdempotencyOptions<FastifyRequest>;

declare module 'fastify' {
  interface FastifyContextConfig {
    /** `false`: this route is not guarded. `true`: it is. An object: options that differ for this route. */
    idempotency?: FastifyRouteIdempotency;
  }
}

const OWNER = 'idempotency/fastify';

const plugin: FastifyPluginAsync<FastifyIdempotencyOptions> = async (fastify: FastifyInstance, options) => {
  // Fastify hands a plugin its register options too; they are not ours.
  const {
    prefix: _prefix,
    logLevel: _logLevel,
    logSerializers: _logSerializers,
    ...base
  } = options as FastifyIdempotencyOptions & { prefix?: unknown; logLevel?: unknown; logSerializers?: unknown };
  const shared = new HttpIdempotency<FastifyRequest>(OWNER, base);
  // One middleware per route that overrides options, made (and its options checked) when the
  // route is declared, so a bad route option fails app.ready(), not a request.
  const perRoute = new WeakMap<object, HttpIdempotency<FastifyRequest>>();
  // Requests whose key this plugin claimed, until their response is stored or released.
  const runs = new WeakMap<FastifyRequest, Run>();
  // The body of each guarded request with a key, as the bytes came on the wire.
  const bodies = new WeakMap<FastifyRequest, Buffer[]>();

  fastify.addHook('onRoute', (route) => {
    const config = route.config as { idempotency?: unknown } | undefined;
    const override = config?.idempotency;
    const owner = `${OWNER} (route ${route.method} ${route.url})`;
    if (override === undefined || override === true || override === false) return;
    // Anything else ("true", null, 1, a list) would leave the route silently unguarded: refuse it.
    if (typeof override !== 'object' || override === null || Array.isArray(override)) {
      throw new HoldfastConfigError(owner, [
        {
          path: 'config.idempotency',
          message: 'must be true, false or an object of options for this route',
          value: override,
        },
      ]);
    }
    if (perRoute.has(override)) return;
    perRoute.set(override, new HttpIdempotency<FastifyRequest>(owner, { ...base, ...override }));
  });

  const coreFor = (request: FastifyRequest): HttpIdempotency<FastifyRequest> | undefined => {
    if (request.is404) return undefined;
    const override = request.routeOptions.config?.idempotency;
    if (override === undefined || override === true) return shared;
    // A route declared outside this plugin's reach (no onRoute) has no entry: it is not guarded.
    return override === false ? undefined : perRoute.get(override);
  };

  // Tees the body on its way to the parser: the fingerprint covers the bytes, whatever the type.
  fastify.addHook('preParsing', async (request: FastifyRequest, _reply: FastifyReply, payload) => {
    const core = coreFor(request);
    if (core === undefined || !core.guards(request.method) || core.key(request.raw).status !== 'ok') return payload;
    const chunks: Buffer[] = [];
    bodies.set(request, chunks);
    const tee = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        chunks.push(chunk);
        callback(null, chunk);
      },
    });
    payload.on('error', (error) => tee.destroy(error));
    const out = payload.pipe(tee) as typeof tee & { receivedEncodedLength?: number };
    // Fastify checks the length it received against Content-Length from this property.
    Object.defineProperty(out, 'receivedEncodedLength', {
      get: () => (payload as { receivedEncodedLength?: number }).receivedEncodedLength,
    });
    return out;
  });

  // preHandler runs after parsing and validation: a request the framework refuses claims nothing.
  fastify.addHook('preHandler', async (request: FastifyRequest, reply: FastifyReply) => {
    const core = coreFor(request);
    if (core === undefined || !core.guards(request.method)) return;
    const decision = await core.decide(request, {
      method: request.method,
      url: request.url,
      headers: request.headers,
      headersDistinct: request.raw.headersDistinct,
      body: bodyBytes(bodies.get(request), request.body),
    });
    if (decision.action === 'run') runs.set(request, decision.run);
    else if (decision.action === 'respond') {
      const { status, headers, body } = decision.response;
      return reply
        .code(status)
        .headers(headers as Record<string, string | string[]>)
        .send(body);
    }
  });

  // Only a response to a request this plugin claimed is stored: never its own 409, 422 or replay.
  fastify.addHook('onSend', async (request: FastifyRequest, reply: FastifyReply, payload: unknown) => {
    const run = runs.get(request);
    if (run === undefined) return payload;
    runs.delete(request);
    const headers = reply.getHeaders() as OutgoingHeaders;
    const stream = asNodeStream(payload);
    if (stream !== undefined) return teeStream(stream, run, reply.statusCode, headers);
    run.body.add(payload);
    await run.finish(reply.statusCode, headers);
    return payload;
  });

  // A claimed request that never reached onSend (a hijacked reply, an aborted request) frees its key.
  fastify.addHook('onResponse', async (request: FastifyRequest) => {
    const run = runs.get(request);
    if (run === undefined) return;
    runs.delete(request);
    await run.abandon('E_INCOMPLETE');
  });
};

/**
 * Idempotency-Key plugin for Fastify 5. Guards the routes of the context it is registered in
 * (and its children); a route opts out with `config: { idempotency: false }` or overrides
 * options with `config: { idempotency: { required: true } }`. Register it after authentication
 * and rate limiting.
 *
 * @example
 * await app.register(idempotency, { store: memoryStore(), scope: (req) => req.user.id });
 */
export const idempotency = Object.assign(plugin, {
  // What fastify-plugin sets, without needing it installed: the plugin decorates the context it
  // is registered in (no encapsulation), under a name, for Fastify 5.
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: '@holdfast/idempotency',
  [Symbol.for('plugin-meta')]: { fastify: '5.x', name: '@holdfast/idempotency' },
});

/** The bytes teed on the way in, or the parsed body when nothing was teed (no body was sent). */
function bodyBytes(chunks: Buffer[] | undefined, parsed: unknown): unknown {
  if (chunks === undefined) return parsed;
  return chunks.length === 0 ? undefined : Buffer.concat(chunks);
}
