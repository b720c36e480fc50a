/**
 * Idempotency-Key plugin for Fastify 5.
 * @module @holdfast/idempotency/fastify
 */
import type { Buffer } from 'node:buffer';
import { IncomingMessage } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import { HoldfastConfigError, ownPluginOptions, parseOptions } from '@holdfast/core';
import type {
  FastifyInstance,
  FastifyPluginAsync,
  FastifyReply,
  FastifyRequest,
  preHandlerHookHandler,
  preParsingHookHandler,
  RouteHandlerMethod,
} from 'fastify';
import { z } from 'zod';
import { discardRest, readAndRestore } from './http/body.js';
import { TextReplay } from './http/capture.js';
import type { OutgoingHeaders } from './http/engine.js';
import {
  type Decision,
  HttpIdempotency,
  type HttpIdempotencyOptions,
  type HttpResponse,
  type KeyHeader,
  NodeRequestView,
  problem,
  type RouteIdempotencyOptions,
  type Run,
} from './http/index.js';
import { captureNodeResponse, leftOrTimedOut, queueBehind, sentStatus } from './http/node.js';
import { asNodeStream, Chunks, teeStream, watchBuffered, watchPushes } from './http/stream.js';

/**
 * Whether an HTTP/2 request has a body though it sent no `Content-Length`: HTTP/2 has no
 * Transfer-Encoding, so a body of unknown length (a stream: fetch, browsers) comes with neither
 * header. Only its headers' END_STREAM flag says there is none; taken for none, every body under
 * a key hashed alike, and another body got the first one's response.
 */
function http2Body(raw: FastifyRequest['raw']): boolean {
  if (raw.httpVersionMajor !== 2) return false;
  return (raw as { stream?: { endAfterHeaders?: boolean } }).stream?.endAfterHeaders !== true;
}

/** The plugin's options that the Express middleware has not. */
const fastifyOptionsSchema = z.strictObject({
  /**
   * The hook in which `scope(request)` is called. `'preHandler'`: after the body is parsed and
   * validated, so the scope may read anything a hook or the parser set. `'preParsing'`: before
   * the body is read, for a scope that reads only what `onRequest` hooks set (an account
   * authenticated there, a header); a replay may then be sent before the body is parsed (see the
   * README). A scope that reads more gets it unset there: `undefined` fails the request.
   * @default 'preHandler'
   */
  scopeAt: z.enum(['preHandler', 'preParsing'], { error: "must be 'preHandler' or 'preParsing'" }).optional(),
});
type FastifyOwnOptions = z.input<typeof fastifyOptionsSchema>;

/** Options of the Fastify plugin: see the README for each, with its default. */
export type FastifyIdempotencyOptions = HttpIdempotencyOptions<FastifyRequest> & FastifyOwnOptions;

/**
 * A route's `config.idempotency`: `false` turns the plugin off for it, `true` guards it with the
 * plugin's options, an object guards it with options that differ.
 */
export type FastifyRouteIdempotency = boolean | (RouteIdempotencyOptions<FastifyRequest> & FastifyOwnOptions);

/** The middleware of a registration, or of a route that overrides its options. */
class FastifyCore extends HttpIdempotency<FastifyRequest> {
  /** `scope(request)` is called in preParsing (`scopeAt: 'preParsing'`) and is not `'global'`. */
  readonly scopesEarly: boolean;

  constructor(owner: string, input: FastifyIdempotencyOptions) {
    const { scopeAt, ...options } = input;
    super(owner, options);
    const own = parseOptions(owner, fastifyOptionsSchema, { scopeAt });
    this.scopesEarly = own.scopeAt === 'preParsing' && this.options.scope !== 'global';
  }
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** `false`: this route is not guarded. `true`: it is. An object: options that differ for this route. */
    idempotency?: FastifyRouteIdempotency;
  }
}

const OWNER = 'idempotency/fastify';

const plugin: FastifyPluginAsync<FastifyIdempotencyOptions> = async (fastify: FastifyInstance, options) => {
  // Fastify hands a plugin its register options too; they are not ours.
  const base = ownPluginOptions(options);
  const shared = new FastifyCore(OWNER, base);
  // One middleware per route that overrides options, made (and its options checked) when the
  // route is declared, so a bad route option fails app.ready(), not a request.
  const perRoute = new WeakMap<object, FastifyCore>();
  // Each guarded request with a valid key: its middleware, the body's bytes as they came on the
  // wire, and, once claimed, its run until stored or released. Kept on the request under a
  // property of this registration's own: a request decorator, so every request has the slot
  // from its construction (a stable shape, and no WeakMap for the collector to trace).
  // `false` once preParsing found the request is not guarded: the later hooks pass it at once.
  // The only property the plugin gives a request: Fastify sets each decorator in one loop of its
  // request constructor, and a second one (of any name) made that store megamorphic, on every
  // request the app serves, guarded or not.
  const slot = Symbol(SLOT);
  fastify.decorateRequest(slot as unknown as string, null);
  // Registered more than once (in the process): a request may hold a key of another registration.
  live++;
  fastify.addHook('onClose', (_instance, done) => {
    live--;
    done();
  });
  type Slot = RequestState | false | null;
  const slotOf = (request: FastifyRequest): Slot => (request as unknown as Record<symbol, Slot>)[slot] as Slot;
  const stateOf = (request: FastifyRequest): RequestState | undefined => slotOf(request) || undefined;
  const keep = (request: FastifyRequest, state: RequestState | false): void => {
    (request as unknown as Record<symbol, Slot>)[slot] = state;
  };

  // Its watched handlers carry a name of this registration's own: Fastify calls a route's handler
  // bound, and a bound function shows only its target's name. A route is known by its handler,
  // never by its method and URL, which two routes share when a constraint (host, version) tells
  // them apart. Random, so no two registrations share one (nor two copies of this module, its ESM
  // and CommonJS builds); a handler watched by two nested registrations shows both marks.
  const mark = `holdfastIdempotencyWatched_${Math.random().toString(36).slice(2)}`;
  // This registration's preParsing and preHandler hooks, as Fastify shows them bound to an
  // instance (see replaysEarly).
  const named = <F extends (...args: never[]) => unknown>(hook: string, fn: F): F =>
    Object.defineProperty(fn, 'name', { value: `${hook} ${mark}` });
  const preParsingName = `bound preParsing ${mark}`;
  const preHandlerName = `bound preHandler ${mark}`;
  const isWatched = (handler: unknown): boolean => {
    const name = typeof handler === 'function' ? handler.name : undefined;
    return name === mark || name?.includes(` ${mark}`) === true;
  };

  fastify.addHook('onRoute', (route) => {
    const override = (route.config as { idempotency?: unknown } | undefined)?.idempotency;
    if (override !== false && typeof route.handler === 'function') {
      route.handler = watched(route.handler);
      // Constraints of the app's own strategies, part of its requests' fingerprint (toldApart).
      const own = ownConstraints((route as { constraints?: unknown }).constraints, fastifyOwn);
      if (own !== undefined) (route as { config?: object }).config = { ...route.config, [CONSTRAINTS]: own };
    }
    if (override === undefined || override === true || override === false) return;
    coreOf(override, route.method, route.url);
  });

  // Whether the server's host and version strategies are Fastify's own, as onRoute found them.
  const builtin: { host?: boolean; version?: boolean } = {};

  /**
   * Whether the server's strategy `name` (host or version) is Fastify's own, whose header
   * toldApart reads from every request. An app may replace either with its own (a version read
   * from Accept, a tenant from X-Forwarded-Host): its routes' values are then what tells them
   * apart, as for any strategy of the app's own. Asked as onRoute sees the first route with that
   * constraint, before Fastify notes it: a server that has the strategy already has the app's
   * own, or Fastify's used by a route declared before the plugin loaded, and both are taken as
   * the app's own (a retry of a route fingerprints alike; only its values are added). Either
   * answer holds from then on: Fastify refuses a strategy of a name a route uses already.
   */
  const fastifyOwn = (name: 'host' | 'version'): boolean => (builtin[name] ??= !fastify.hasConstraintStrategy(name));

  // The headers of Fastify's own constraint strategies that some route of the server is told
  // apart by (see toldApart): read at the first request, when every route is declared.
  let constraining: readonly string[] | undefined;

  /**
   * What tells a request's route apart from others of its method and URL, for its fingerprint
   * (undefined where nothing does): two routes told apart by a constraint are two handlers, and
   * a key used on one and sent to the other with the same body must get the 422 for a reused key,
   * never the first one's stored response. Where any route of the server is told apart by Host or
   * Accept-Version, the request's value of that header, on every guarded route (so a route seen
   * by onRoute and one declared before the plugin loaded fingerprint alike, in two processes
   * too); a route's constraints of the app's own strategies, as onRoute saw them (a route
   * declared before the plugin loaded shows none: its app adds the header to `fingerprint`).
   */
  const toldApart = (request: FastifyRequest): string | undefined => {
    constraining ??= constrainingHeaders(fastify);
    const config = (routeContextOf(request)?.config ?? request.routeOptions.config) as
      | Record<symbol, unknown>
      | undefined;
    const own = config?.[CONSTRAINTS];
    if (constraining.length === 0 && own === undefined) return undefined;
    let field = typeof own === 'string' ? own : '';
    for (const name of constraining) field += `\0${name}=${headerText(request.raw.rawHeaders, name)}`;
    return field;
  };

  /**
   * A route's own middleware, made (and its options checked) once per `config.idempotency`
   * object: when the route is declared, so a bad option fails app.ready(); for a route declared
   * before the plugin loaded, at its first request (a bad option then fails that request, never
   * leaves the route unguarded).
   */
  const coreOf = (override: unknown, method: unknown, url: unknown): FastifyCore => {
    const known = perRoute.get(override as object);
    if (known !== undefined) return known;
    const owner = `${OWNER} (route ${String(method)} ${String(url)})`;
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
    const core = new FastifyCore(owner, { ...base, ...override });
    perRoute.set(override, core);
    return core;
  };

  /**
   * A route whose handler is not watched (onRoute did not see it, and it could not be watched
   * late): whether its handler was called cannot be known, so it is taken as called.
   */
  const unwatched = (request: FastifyRequest): boolean => !isWatched(request.routeOptions.handler);

  // The route contexts watchLate() has looked at: each route's is looked at once, on its first
  // claimed request; later ones pay a WeakSet lookup, and make nothing.
  const looked = new WeakSet<object>();

  /**
   * A claimed request on a route onRoute did not see (declared before the plugin loaded): its
   * handler is watched from now on, this request's included. Fastify reads a route's handler
   * from the route's context at each call, and has no public way to change it: the context is
   * found under Fastify's own symbol, and its handler is replaced only when it is the one
   * `routeOptions.handler` shows. Where that fails (another Fastify), the route stays unwatched.
   */
  const watchLate = (request: FastifyRequest): void => {
    const context = routeContextOf(request);
    if (context === undefined || looked.has(context)) return;
    looked.add(context);
    const handler = context.handler;
    if (isWatched(handler) || typeof handler !== 'function' || handler !== request.routeOptions.handler) return;
    context.handler = watched(handler as RouteHandlerMethod);
  };

  /**
   * A claimed request's reply is hijacked: the handler answers on the raw response, which no
   * onSend sees. That response is taken from the raw response as it is written, and stored when
   * it ends (released if it never does), as the Express middleware takes one. Not one hijacked to
   * answer Fastify's handlerTimeout while the handler runs: see the response's 'close' below.
   */
  const hijacked = (reply: FastifyReply): void => {
    const state = stateOf(reply.request);
    const run = state?.run;
    if (state === undefined || run === undefined || timedOut(reply.request)) return;
    state.captured = true;
    captureNodeResponse(reply.raw, run);
  };

  // An async handler's promise, kept on a claimed request: Fastify sends nothing for one that
  // resolves with undefined once its client has left (no onSend), though the handler ran.
  // Only the outermost watch of a handler watched twice (another plugin wrapped it in between)
  // keeps its promise.
  const watched = (handler: RouteHandlerMethod): RouteHandlerMethod => {
    const watch = function (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
      const state = stateOf(request);
      const first = state?.run !== undefined && !state.started;
      if (first) state.started = true;
      const result = handler.call(this, request, reply);
      if (first && isThenable(result)) {
        state.handled = result;
        // Its client left already: Fastify's own reaction to the promise comes first.
        if (state.left) queueMicrotask(() => sendUnsent(request, reply, state.run, result));
      }
      return result;
    } as RouteHandlerMethod;
    // Its own name kept first, for whoever shows a handler's name (a tracer's span).
    return Object.defineProperty(watch, 'name', { value: handler.name === '' ? mark : `${handler.name} ${mark}` });
  };

  /**
   * A claimed request whose client left before its response, once its async handler settled
   * (reacting after Fastify's own reaction to the same promise). Resolved with undefined: what
   * Fastify would have sent (and did not, to no one) is sent, an empty body with the handler's
   * status and headers, and the plugin's onSend stores it, as for a handler that resolves with a
   * value, client or not. Hijacked (or its raw response written): its key is freed.
   */
  const sendUnsent = (
    request: FastifyRequest,
    reply: FastifyReply,
    run: Run | undefined,
    handled: PromiseLike<unknown>,
  ) => {
    // The handler returned its reply (`(request, reply) => reply.send(...)`): Fastify drops
    // nothing of it, and its promise settles when the response closes, whether or not the sent
    // reply has got through the onSend hooks yet. (An empty reply sent then was stored in place
    // of one still in an async onSend hook before the plugin's.)
    if ((handled as unknown) === reply) return;
    handled.then((payload) => {
      const held = stateOf(request);
      if (run === undefined || held?.run !== run) return;
      // Hijacked, or written on the raw response, after its client left: it can never complete,
      // and the handler ran (released, a retry ran it again).
      if (reply.sent || reply.raw.headersSent) {
        held.run = undefined;
        void run.lost(sentStatus(reply.raw));
        return;
      }
      // A value: Fastify sends it. Nothing, to a client it thinks is there: Fastify sends that too.
      const socket = request.raw.socket;
      if (payload !== undefined || (!request.raw.aborted && socket !== null && !socket.destroyed)) return;
      reply.send();
    }, noop);
  };

  const coreFor = (request: FastifyRequest): FastifyCore | undefined => {
    // Read from the route context: every request asks, and `routeOptions` is a new object of a
    // dozen fields at each read (which asks the server for its constraint strategies too). A
    // route without a url in its config is Fastify's 404 route (its own `is404`).
    const context = routeContextOf(request);
    let config: { url?: unknown; idempotency?: unknown } | undefined;
    if (context !== undefined) {
      config = context.config as typeof config;
      if (config?.url === undefined) return undefined;
    } else {
      if (request.is404) return undefined;
      config = request.routeOptions.config;
    }
    const override = config?.idempotency;
    if (override === undefined || override === true) return shared;
    if (override === false) return undefined;
    return perRoute.get(override as object) ?? coreOf(override, request.method, request.routeOptions.url);
  };

  // The hooks take callbacks, not promises: a request that is not ours passes each one without
  // a promise or a tick.

  // Tees the body on its way to the parser: the fingerprint covers the bytes, whatever the type.
  /**
   * Whether a request with a valid key may be answered with its replay before Fastify parses its
   * body: nothing else would run before the handler (this registration's are the route's only
   * preParsing and preHandler hooks, and it has no preValidation hook: an authentication there
   * is never skipped; nor a schema for its headers, which the fingerprint does not cover: a
   * request Fastify would refuse gets its 400, never the replay), the body's length is known and
   * fits the request stream's buffer (read without anyone reading it), and the store holds a
   * completed response under the key ({@link HttpIdempotency.mayReplayNow}: in-process, with the
   * global scope or one asked in preParsing). Its body is then awaited here; whether its
   * fingerprint matches is known only once it has all come.
   */
  const replaysEarly = (
    request: FastifyRequest,
    core: FastifyCore,
    header: KeyHeader,
    scope: string | undefined,
    length: string | undefined,
    payload: unknown,
  ): boolean => {
    // A Node request over a socket pushes its body as it comes, read or not (light-my-request's
    // pushes it only when read: it is left to Fastify).
    if (live !== 1 || payload !== request.raw || length === undefined || !(payload instanceof IncomingMessage)) {
      return false;
    }
    const bytes = shortLength(length);
    if (!(bytes > 0 && bytes < request.raw.readableHighWaterMark)) return false;
    // The store first: a first request (no record) looks no further.
    if (!core.mayReplayNow(header, scope)) return false;
    const context = routeContextOf(request) as RouteHooks | undefined;
    return (
      context !== undefined &&
      context.preValidation === null &&
      context.schema?.headers === undefined &&
      onlyHook(context.preParsing, preParsingName) &&
      onlyHook(context.preHandler, preHandlerName) &&
      parsesByDefault(context, request.headers['content-type'])
    );
  };

  /**
   * Once the body of a request {@link replaysEarly} let through has all come: its replay, sent
   * from this hook (the body is never parsed, and no later hook or the handler runs), or, when
   * it does not match the stored request, on its usual way (parsed, then decided in preHandler).
   * A client that leaves before its body has all come: on its usual way too, as Fastify has it.
   */
  const replayEarly = (
    request: FastifyRequest,
    reply: FastifyReply,
    state: RequestState,
    payload: FastifyRequest['raw'],
    done: (error: Error | null, payload?: FastifyRequest['raw']) => void,
  ): void => {
    const raw = request.raw;
    const left = () => {
      if (state.complete) return;
      state.onComplete = undefined;
      done(null, payload);
    };
    raw.once('close', left);
    state.onComplete = () => {
      state.onComplete = undefined;
      raw.removeListener('close', left);
      const chunks = state.chunks as Chunks;
      // Answered meanwhile (Fastify's handlerTimeout): Node drops the rest of a body nobody reads
      // and pushes its end all the same. What came is not the request: never fingerprinted.
      if (reply.sent || chunks.size !== Number((state.headers ?? raw.headers)['content-length']))
        return done(null, payload);
      let decision: Decision | undefined;
      try {
        const body = chunks.concat();
        const view = new NodeRequestView(
          request.method,
          request.url,
          state.headers ?? request.headers,
          body,
          raw,
          toldApart(request),
        );
        decision = state.core.replayNow(view, state.header as KeyHeader, state.scope);
      } catch {
        decision = undefined;
      }
      if (decision?.action !== 'respond') return done(null, payload);
      // Answered here: the later hooks pass it.
      keep(request, false);
      respondWith(reply, decision.response, done, request.method !== 'HEAD');
    };
    // All here already (an async hook ran first).
    if (state.complete) state.onComplete();
  };

  const preParsing: preParsingHookHandler = (request, reply, payload, next) => {
    // Not captured by a closure of this hook's own: one made here (for a scope's promise) cost
    // every request about 1,000 instructions, whether made or not.
    let done = next;
    let core: FastifyCore | undefined;
    try {
      core = coreFor(request);
    } catch (error) {
      return done(error as Error);
    }
    if (core === undefined || !core.guards(request.method)) {
      keep(request, false);
      return done(null, payload);
    }
    // Read once for the request: Node's `headers` getter costs a megamorphic keyed load at each
    // read (~400 instructions under callgrind). Fastify's, which are Node's unless a hook set others.
    const headers = request.headers;
    const header = core.key(request.raw, headers);
    if (header.status !== 'ok') {
      if (core.passes(header)) keep(request, false);
      return done(null, payload);
    }
    // `scopeAt: 'preParsing'`: asked now, once for the request (its claim takes the same).
    const scope = core.scopesEarly ? core.askScope(request) : undefined;
    const chunks = new Chunks();
    const state: RequestState = {
      core,
      header,
      headers,
      chunks,
      scope: typeof scope === 'string' ? scope : undefined,
      run: undefined,
      complete: false,
      watched: false,
      started: false,
      handled: undefined,
      left: false,
      captured: false,
      hijack: undefined,
    };
    keep(request, state);
    // A scope that returns a promise (or fails): the request goes on once it is settled, with no
    // early replay; one that fails is the request's error, as in preHandler.
    if (typeof scope === 'object') done = afterScope(scope, state, done);
    // No body (Fastify reads none): nothing to wait for.
    const { 'content-length': length, 'transfer-encoding': chunked } = headers;
    if (chunked === undefined && (length === '0' || (length === undefined && !http2Body(request.raw)))) {
      state.complete = true;
      return done(null, payload);
    }
    const ended = () => {
      state.complete = true;
      state.onComplete?.();
    };
    // Most bodies: each chunk is kept as the stream is handed it, with no stream in between.
    if (watchPushes(payload, chunks, ended)) {
      state.watched = true;
      if (replaysEarly(request, core, header, state.scope, length, payload)) {
        return replayEarly(request, reply, state, payload as FastifyRequest['raw'], done);
      }
      return done(null, payload);
    }
    // Bytes already buffered (an async hook ran first: an authentication in onRequest): read and
    // put back, then watched.
    if (payload === request.raw && watchBuffered(payload, chunks, ended)) {
      state.watched = true;
      if (replaysEarly(request, core, header, state.scope, length, payload)) {
        return replayEarly(request, reply, state, payload as FastifyRequest['raw'], done);
      }
      return done(null, payload);
    }
    // Another stream (a preParsing hook's) is only seen by reading: tee it.
    const tee = new Tee(payload, chunks, ended);
    payload.on('error', (error) => tee.destroy(error));
    done(null, payload.pipe(tee));
  };
  fastify.addHook('preParsing', named('preParsing', preParsing));

  // A content-type parser that hands the body stream to the handler (@fastify/multipart's
  // request.file()) leaves it unread when the key is claimed: a fingerprint then would cover
  // part of the body, and a retry with another tail would get this request's response. The rest
  // is read here (up to maxRequestBytes) and put back for the handler. A body someone is reading
  // (flowing) is waited for if it fits the stream's buffer; any other is refused.
  const whole = (
    request: FastifyRequest,
    reply: FastifyReply,
    state: RequestState,
    then: () => void,
    done: (error?: Error) => void,
  ) => {
    const raw = request.raw;
    if (state.watched && raw.readableFlowing !== true && !raw.readableEnded) {
      readAndRestore(raw, state.core.options.maxRequestBytes).then((read) => {
        if (read === 'aborted') return done(new Error('the client left before sending its whole body'));
        if (read !== 'tooLarge') return then();
        discardRest(raw, state.core.options.maxRequestBytes);
        const { status, headers, body } = problem('tooLarge');
        reply
          .code(status)
          .headers(headers as Record<string, string | string[]>)
          .send(body);
      });
      return;
    }
    const length = Number((state.headers ?? raw.headers)['content-length']);
    if (!state.watched || !(length >= 0 && length < raw.readableHighWaterMark)) {
      return done(
        new HoldfastConfigError(OWNER, [
          {
            path: 'config.idempotency',
            message: `${request.method} ${request.routeOptions.url}: the body was not read before the handler (a content-type parser that streams it): it cannot be fingerprinted; turn idempotency off for this route with config: { idempotency: false }`,
            value: undefined,
          },
        ]),
      );
    }
    const left = () => {
      if (state.complete) return;
      state.onComplete = undefined;
      done(new Error('the client left before sending its whole body'));
    };
    raw.once('close', left);
    state.onComplete = () => {
      state.onComplete = undefined;
      raw.removeListener('close', left);
      then();
    };
  };

  // preHandler runs after parsing and validation: a request the framework refuses claims nothing.
  const preHandler: preHandlerHookHandler = (request, reply, done) => {
    const known = slotOf(request);
    if (known === false) return done();
    const state = known ?? undefined;
    // Claimed already: its handler called reply.callNotFound(), and Fastify runs the 404
    // context's preHandler hooks for it. Asking the store again answered the request with its
    // own key's 409 in-progress, stored as that key's answer; the 404 is its handler's answer.
    if (state?.run !== undefined) return done();
    let core: FastifyCore | undefined;
    try {
      core = state?.core ?? coreFor(request);
    } catch (error) {
      return done(error as Error);
    }
    if (core === undefined || !core.guards(request.method)) return done();
    if (state !== undefined && !state.complete) {
      return whole(request, reply, state, () => decide(request, reply, core, state, done, true), done);
    }
    decide(request, reply, core, state, done, false);
  };
  fastify.addHook('preHandler', named('preHandler', preHandler));

  const decide = (
    request: FastifyRequest,
    reply: FastifyReply,
    core: FastifyCore,
    state: RequestState | undefined,
    done: (error?: Error) => void,
    waited: boolean,
  ): void => {
    const view = new NodeRequestView(
      request.method,
      request.url,
      state?.headers ?? request.headers,
      bodyBytes(state?.chunks, request.body),
      request.raw,
      toldApart(request),
    );
    let decided: Decision | Promise<Decision>;
    try {
      decided = core.decideNow(
        request,
        view,
        state?.header,
        live > 1 ? heldRuns(request, slot) : undefined,
        state?.scope,
      );
    } catch (error) {
      done(error as Error);
      return;
    }
    if (decided instanceof Promise) {
      decided.then((decision) => act(request, reply, core, state, done, decision, true), done);
    } else act(request, reply, core, state, done, decided, waited);
  };

  const act = (
    request: FastifyRequest,
    reply: FastifyReply,
    core: FastifyCore,
    state: RequestState | undefined,
    done: (error?: Error) => void,
    decision: Decision,
    waited: boolean,
  ): void => {
    // Fastify's handlerTimeout answered while the body or the store was waited for: the handler
    // will not run. (Fastify calls the hook only while its reply is unsent: unless this request
    // waited since, it still is, and `sent`, a getter, is not read.)
    if (waited && reply.sent) {
      if (decision.action === 'run') void decision.run.abandon('E_INCOMPLETE');
      done();
      return;
    }
    if (decision.action === 'respond') {
      respondWith(reply, decision.response, done, request.method !== 'HEAD');
      return;
    }
    if (decision.action === 'run') {
      const run = decision.run;
      watchLate(request);
      if (state === undefined) {
        keep(request, {
          core,
          header: undefined,
          headers: undefined,
          chunks: undefined,
          scope: undefined,
          run,
          complete: true,
          watched: false,
          started: false,
          handled: undefined,
          left: false,
          captured: false,
          hijack: undefined,
        });
      } else state.run = run;
      watchHijack(stateOf(request) as RequestState, reply, hijacked);
      try {
        done();
      } finally {
        // Still claimed once the hooks after this one and the handler have run as far as they
        // go without waiting: watched until it closes (see watchClose). A handler that answered
        // already (onSend cleared the run) is not: its response's 'close' comes later, always
        // (Node emits it in a later tick), and would find nothing to do.
        if (stateOf(request)?.run === run) watchClose(request, reply, run);
      }
      return;
    }
    done();
  };

  /**
   * Watches a claimed request's response until it closes: one that closes without reaching onSend
   * (a hijacked reply, ended or left by its client) frees its key, not held for its lease. (A reply
   * not hijacked is still the handler's to send, and stored then, client or not.) This listener,
   * on claimed requests only, replaces an onResponse hook that ran on every request (~600 bytes
   * each, and it never ran for a client that left). 'close' comes once: `on` spares `once`'s
   * wrapper. Its own function, not a closure in act(): act() would then make a context for its
   * arguments at every call, replays and unclaimed requests included.
   */
  const watchClose = (request: FastifyRequest, reply: FastifyReply, run: Run): void => {
    const closed = () => {
      const held = stateOf(request);
      if (held?.run !== run) return;
      // Hijacked and taken from the raw response: that watch says when it is complete, and a
      // client that left before it ended changes nothing while the handler runs (an end then is
      // stored whole). One whose handler threw will never be ended (Fastify leaves a hijacked
      // reply to it): as for a handler that throws unhijacked, its key is freed, unless its
      // response began (then lost). One whose handler returned, its client gone, is not ended
      // by it: the response is lost.
      if (held.captured) {
        if (held.handled !== undefined) {
          const lost = () => run.lost(sentStatus(reply.raw));
          // Thrown once its response began: its effect may have happened, lost as above.
          Promise.resolve(held.handled).then(lost, () =>
            reply.raw.headersSent ? lost() : run.abandon('E_INCOMPLETE'),
          );
        }
        return;
      }
      // Written on the raw response unhijacked (onSend, which stores a reply, clears `run`): no
      // watch saw its bytes, and the handler ran (released, a retry ran it again).
      if (reply.raw.headersSent && !timedOut(request)) {
        held.run = undefined;
        void run.lost(sentStatus(reply.raw));
        return;
      }
      if (reply.sent) {
        held.run = undefined;
        if (!timedOut(request) || !(held.started || unwatched(request))) {
          void run.abandon('E_INCOMPLETE');
          return;
        }
        // Hijacked to answer Fastify's handlerTimeout while the handler runs: a retry waits for
        // it. Nothing of a hijacked answer can be stored: once the handler's promise settled,
        // its key is freed. A handler that returned none (it answers later, from a timer or a
        // callback) ends unseen, its late send a no-op: its key stays claimed for its lease.
        const handled = held.handled;
        if (handled !== undefined) Promise.resolve(handled).then(abandonRun(run), abandonRun(run));
        return;
      }
      // Its client left first: the handler's response is still stored when it comes, and an
      // async handler's that Fastify drops (it resolved with nothing) is sent for it. One that
      // never comes gets the response-lost problem before the lease runs out (a takeover ran
      // the handler again). Closed by the handler or the server (reply.raw.destroy() to refuse
      // it): nothing is sent for it (an empty 200 was stored, a success it never answered).
      held.left = leftOrTimedOut(request.raw.socket);
      if (held.left && held.handled !== undefined) sendUnsent(request, reply, run, held.handled);
      run.lostUnlessEnded(() => sentStatus(reply.raw));
    };
    // Closed before it was claimed (its client left while an async hook or scope, or the store,
    // was waited for): its 'close' came already, and the key was held for its lease (an async
    // handler that resolves with nothing is sent nothing).
    if (closedAlready(reply.raw)) {
      closed();
      return;
    }
    reply.raw.on('close', closed);
    // Pipelined behind another response on its connection (no socket yet): no 'close' comes
    // if the connection goes first, and its client left all the same.
    if (reply.raw.socket === null) queueBehind(reply.raw, closed);
  };

  // Only a response to a request this plugin claimed is stored: never its own 409, 422 or replay.
  fastify.addHook('onSend', (request: FastifyRequest, reply: FastifyReply, payload: unknown, done) => {
    const state = stateOf(request);
    const run = state?.run;
    if (state === undefined || run === undefined) {
      // A response of the plugin's own sent without a content type: none goes (Fastify gave it one).
      if (untyped > 0 && untypedReplies.delete(reply)) {
        untyped--;
        reply.removeHeader('content-type');
      }
      return done(null, payload);
    }
    state.run = undefined;
    // Read at once: Fastify's getHeader lower-cases each name twice (its own and Node's), and
    // reading the replayable names one by one made its keyed lookup megamorphic, for Fastify's
    // own reads too. The run keeps only the replayable ones (pickHeaders, as for any response).
    const stream = asNodeStream(payload);
    // Kept past this hook (a stream's, a store that answers later, a timed-out 5xx's): a copy. An
    // in-process store picks the headers it keeps into a new object at once: the reply's own.
    const headers = headersOf(reply, stream !== undefined || !run.atOnce || reply.statusCode >= 500);
    if (stream !== undefined) {
      return done(
        null,
        teeStream(stream, run, reply.statusCode, headers, () => reply.raw.headersSent),
      );
    }
    // Written on the raw response before this reply (the handler then threw, or sent a value):
    // Fastify cannot send this one, and what went can never be stored whole, while the handler's
    // effect may have happened. (Storing this reply replayed what the client never got, and
    // releasing its error's 500 ran the handler again.)
    if (reply.raw.headersSent) {
      void run.lost(sentStatus(reply.raw));
      return done(null, payload);
    }
    run.body.add(payload);
    // Fastify's handlerTimeout answers while the handler still runs (it aborts request.signal
    // with its error first): the key waits for the handler, and a retry cannot run beside it.
    if (reply.statusCode >= 500 && timedOut(request) && (state.started || unwatched(request))) {
      void run.finishAfter(reply.statusCode, headers, state.handled);
      return done(null, payload);
    }
    const settled = run.finish(reply.statusCode, headers);
    // An in-process store has the record already: the reply goes now, and Fastify sends it
    // without waiting a tick (a reply still unsent when the handler's promise settles costs a
    // stream-finished watch).
    if (run.atOnce) return done(null, payload);
    // Fastify's handlerTimeout may answer while the store keeps this response (the reply is not
    // sent yet): that answer went, and sending this one too would throw in this promise.
    settled.then(() => {
      if (!reply.raw.headersSent) done(null, payload);
    }, done);
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

/**
 * preParsing's `done` for a request whose scope returned a promise: the request goes on once it
 * is settled (no early replay then), its value kept for the claim; a rejection is the request's
 * error, as in preHandler.
 */
function afterScope(
  scope: Promise<string>,
  state: RequestState,
  next: Parameters<preParsingHookHandler>[3],
): Parameters<preParsingHookHandler>[3] {
  return (error, stream) => {
    if (error !== null) return next(error);
    scope.then((known) => {
      state.scope = known;
      next(null, stream);
    }, next);
  };
}

/** What the plugin knows of a guarded request. */
interface RequestState {
  readonly core: FastifyCore;
  readonly header: KeyHeader | undefined;
  /** The request's headers as preParsing read them (undefined: a state made after it). */
  readonly headers: FastifyRequest['headers'] | undefined;
  readonly chunks: Chunks | undefined;
  /** What `scope(request)` gave in preParsing (`scopeAt: 'preParsing'`); undefined: asked when decided. */
  scope: string | undefined;
  run: Run | undefined;
  /** The body has all come (its last chunk pushed, or teed). */
  complete: boolean;
  /** Its chunks are watched as pushed, not teed: it arrives without anyone reading it. */
  watched: boolean;
  /** Called once the body has all come. */
  onComplete?: (() => void) | undefined;
  /**
   * Once claimed: its handler was called (a later hook may answer first, and it never is). On a
   * route whose handler is not watched it stays false: ask `unwatched()` then.
   */
  started: boolean;
  /** Once claimed: the promise its async handler returned. */
  handled: PromiseLike<unknown> | undefined;
  /** Once claimed: its response closed unsent (its client left). */
  left: boolean;
  /** Once claimed: its reply was hijacked, and its response is taken from the raw response. */
  captured: boolean;
  /** Once claimed: who is told when its reply is hijacked (see {@link watchHijack}). */
  hijack: HijackWatcher;
}

/** Where onRoute keeps, on a route's config, its constraints of the app's own strategies. */
const CONSTRAINTS = Symbol.for('holdfast.idempotency.constraints');

/**
 * A route's constraints of strategies other than Fastify's own two (whose headers toldApart
 * reads from the request), one field each, in name order; undefined for none.
 */
function ownConstraints(constraints: unknown, fastifyOwn: (name: 'host' | 'version') => boolean): string | undefined {
  if (typeof constraints !== 'object' || constraints === null) return undefined;
  let field = '';
  for (const name of Object.keys(constraints).sort()) {
    if ((name === 'host' || name === 'version') && fastifyOwn(name)) continue;
    field += `\0${name}=${shown((constraints as Record<string, unknown>)[name])}`;
  }
  return field === '' ? undefined : field;
}

/** A constraint's value as text: a string as it is, a pattern as its source, anything else as JSON. */
function shown(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value instanceof RegExp) return String(value);
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/**
 * The headers of Fastify's own constraint strategies that a route of the server is told apart
 * by: Host (its `host` strategy), Accept-Version (`version`).
 */
function constrainingHeaders(fastify: FastifyInstance): readonly string[] {
  const names: string[] = [];
  if (fastify.hasConstraintStrategy('host')) names.push('host');
  if (fastify.hasConstraintStrategy('version')) names.push('accept-version');
  return names;
}

/**
 * A request header's value as Fastify's router read it to pick the route: from the headers as
 * they came, never from `request.headers`, which a hook may change after routing (an
 * Accept-Version defaulted for a request that sent none fingerprinted it as that version's route,
 * and it got that route's stored response). Copies joined (a second Host, which Node drops, only
 * tells more apart); Host from `:authority` where it is missing or empty (HTTP/2), as Fastify's
 * host strategy reads it. Header values never hold a NUL, which separates the fields.
 */
function headerText(lines: readonly string[], name: string): string {
  let value = '';
  let authority = '';
  for (let i = 1; i < lines.length; i += 2) {
    const line = lines[i - 1]?.toLowerCase();
    if (line === name) value += `, ${lines[i]}`;
    else if (line === ':authority') authority = `, ${lines[i]}`;
  }
  // `, ` alone: an empty Host.
  return (name === 'host' && value.length < 3 ? authority : value).slice(2);
}

/** The description of each registration's request decorator (see {@link watchHijack}). */
const SLOT = 'holdfast.idempotency.state';
/** Registrations of this plugin whose app is not closed (see {@link heldRuns}). */
let live = 0;
type HijackWatcher = ((reply: FastifyReply) => void) | undefined;
/** The reply prototypes whose `hijack` tells the watchers. */
const hijackPatched = new WeakSet<object>();
/**
 * The `hijack` the last reply {@link watchHijack} saw to resolved to, once its prototype chain's
 * was patched: a reply whose `hijack` is that function calls the watchers.
 */
let seenHijack: unknown;

/**
 * Tells `watcher` when the reply of the request `state` is kept for is hijacked. Fastify has no
 * hook for it: its replies' `hijack` (on Fastify's own reply prototype, which every context's
 * reply inherits) is given, once, a version that first tells the watchers of the request's
 * states, found under the request's own decorators of this plugin (one per registration that
 * guards it: nested registrations are each told, outer first); a reply without one passes
 * straight through.
 */
function watchHijack(state: RequestState, reply: FastifyReply, watcher: (reply: FastifyReply) => void): void {
  state.hijack = watcher;
  // A reply of the same context as the last one (a server's usual next) has its `hijack` seen to:
  // known by the function its `hijack` resolves to (a load, where `Object.getPrototypeOf` is a
  // call to V8's runtime, ~120 instructions a claimed request). Not by its class: a reply given a
  // prototype with a `hijack` of its own still has its context's constructor.
  const resolved = (reply as { hijack?: unknown }).hijack;
  if (resolved === seenHijack && resolved !== undefined) return;
  let proto: object | null = Object.getPrototypeOf(reply);
  while (proto !== null && !Object.hasOwn(proto, 'hijack')) proto = Object.getPrototypeOf(proto);
  if (proto !== null && !hijackPatched.has(proto)) patchHijack(proto);
  seenHijack = (reply as { hijack?: unknown }).hijack;
}

/** Gives `proto`'s own `hijack` a version that first tells the watchers (see {@link watchHijack}). */
function patchHijack(proto: object): void {
  hijackPatched.add(proto);
  const hijack = (proto as { hijack: (...args: unknown[]) => unknown }).hijack;
  // Its attributes as they were (Fastify's is enumerable): a property whose attributes change
  // turns the prototype into a dictionary, and every load of a reply's methods and getters, in
  // Fastify's code too, then took V8's generic path (~3,000 instructions a request).
  const { enumerable = false } = Object.getOwnPropertyDescriptor(proto, 'hijack') ?? {};
  Object.defineProperty(proto, 'hijack', {
    value: function (this: FastifyReply, ...args: unknown[]) {
      const request = this.request as unknown as Record<symbol, unknown> | undefined;
      if (typeof request === 'object' && request !== null) tellHijacked(request, this);
      return hijack.apply(this, args);
    },
    writable: true,
    configurable: true,
    enumerable,
  });
}

/**
 * Calls the hijack watcher of each state kept on `request` (rare: only a hijacking handler gets
 * here), once: it is taken off first, so another copy of this module (its ESM and CommonJS builds
 * each patch `hijack`) that finds the same state calls it no more.
 */
function tellHijacked(request: Record<symbol, unknown>, reply: FastifyReply): void {
  for (const key of Object.getOwnPropertySymbols(request)) {
    if (key.description !== SLOT) continue;
    const state = request[key] as Partial<RequestState> | null | false | undefined;
    const watcher = state ? state.hijack : undefined;
    if (typeof watcher !== 'function') continue;
    (state as RequestState).hijack = undefined;
    watcher(reply);
  }
}

/**
 * The runs of the other registrations of this plugin that guard `request` (one inside the other):
 * the request holds their keys. Asking the same store for one of them again answered the request
 * with its own key's 409 in-progress, which the registration holding it then stored.
 */
function heldRuns(request: FastifyRequest, own: symbol): Run[] | undefined {
  let runs: Run[] | undefined;
  const slots = request as unknown as Record<symbol, unknown>;
  for (const key of Object.getOwnPropertySymbols(request)) {
    if (key === own || key.description !== SLOT) continue;
    const state = (slots[key] as Partial<RequestState> | null | false | undefined) || undefined;
    if (state?.run !== undefined) (runs ??= []).push(state.run);
  }
  return runs;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === 'function';
}

function noop(): void {}

function abandonRun(run: Run): () => void {
  return () => void run.abandon('E_INCOMPLETE');
}

/**
 * Fastify's key of a request's route context (`kRouteContext`, its description
 * 'fastify.context'), looked for on the first request that needs it: null if it is not there.
 */
let contextKey: symbol | null | undefined;

/** A request's route context, whose `handler` Fastify calls; undefined if it cannot be found. */
function routeContextOf(request: FastifyRequest): { handler: unknown; config?: unknown } | undefined {
  contextKey ??= symbolOf(request, 'fastify.context');
  // A load site of its own: one shared with the reply's headers (ownHeadersOf) saw two keys on two
  // kinds of object, went megamorphic, and cost ~110 instructions at each of four reads a request.
  const context = contextKey === null ? undefined : (request as unknown as Record<symbol, unknown>)[contextKey];
  return typeof context === 'object' && context !== null
    ? (context as { handler: unknown; config?: unknown })
    : undefined;
}

/** The symbol of `object`'s own keys that `description` describes, null if none. */
function symbolOf(object: object, description: string): symbol | null {
  return Object.getOwnPropertySymbols(object).find((key) => key.description === description) ?? null;
}

/**
 * Fastify's key of a reply's own headers object (`kReplyHeaders`, its description
 * 'fastify.reply.headers'), looked for on the first reply that needs it: null if it is not there.
 */
let replyHeadersKey: symbol | null | undefined;

/** A reply's own headers object (see {@link replyHeadersKey}), or undefined where it is not found. */
function ownHeadersOf(reply: FastifyReply): Record<string, unknown> | undefined {
  replyHeadersKey ??= symbolOf(reply, 'fastify.reply.headers');
  // Its own load site (see routeContextOf).
  const headers = replyHeadersKey === null ? undefined : (reply as unknown as Record<symbol, unknown>)[replyHeadersKey];
  return typeof headers === 'object' && headers !== null ? (headers as Record<string, unknown>) : undefined;
}

/**
 * `reply.getHeaders()`: a copy of the reply's own headers merged over those set on its raw
 * response. Without any of the latter (the usual case: Fastify writes its own at writeHead), a
 * copy of the former, the same object without a null-prototype copy of the raw ones and two
 * spreads (~1,000 instructions a stored response); without `copy`, the reply's own object itself,
 * for a caller that is done reading it before Fastify writes the head.
 */
function headersOf(reply: FastifyReply, copy: boolean): OutgoingHeaders {
  const own = ownHeadersOf(reply);
  if (own === undefined || reply.raw.getHeaderNames().length > 0) return reply.getHeaders() as OutgoingHeaders;
  return (copy ? { ...own } : own) as OutgoingHeaders;
}

/**
 * `reply.headers(headers)`, each name already in lower case written straight into the reply's
 * headers object, as `reply.header()` writes it (a replay's names are: its `toLowerCase()` cost a
 * replay ~230 instructions a header). `set-cookie`, which `header()` merges, and any other name
 * go through `header()`; so do all of them where Fastify keeps its headers elsewhere.
 * `lengthOwn`: `content-length` is left to Fastify, which sets every body's own (not a HEAD's).
 */
function setHeaders(reply: FastifyReply, response: HttpResponse, lengthOwn: boolean): FastifyReply {
  const own = ownHeadersOf(reply);
  if (own === undefined) return reply.headers(response.headers as Record<string, string | string[]>);
  // A text replay's stored headers are written as they are (its lists copied: they are the
  // store's), then its own two: the copy its `headers` would make is never made.
  const text = response instanceof TextReplay ? response : undefined;
  const headers = text === undefined ? response.headers : text.stored;
  const names = Object.keys(headers);
  for (let i = 0; i < names.length; i++) {
    const name = names[i] as string;
    let value = headers[name] as string | string[];
    if (lengthOwn && name === 'content-length') continue;
    if (text !== undefined && typeof value !== 'string') value = [...value];
    if (name !== 'set-cookie' && name !== '__proto__' && lowerCase(name)) own[name] = value;
    else reply.header(name, value);
  }
  if (text !== undefined) {
    own['idempotent-replayed'] = 'true';
    if (!lengthOwn) own['content-length'] = String(text.text.length);
  }
  return reply;
}

/**
 * A Content-Length of six digits at most, as a number; NaN for any other text (a longer body is
 * never replayed early). Node's parser has checked it is digits; `Number()` of it cost about 300
 * instructions, on every first request.
 */
function shortLength(text: string): number {
  if (text.length === 0 || text.length > 6) return Number.NaN;
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const digit = text.charCodeAt(i) - 0x30;
    if (digit < 0 || digit > 9) return Number.NaN;
    n = n * 10 + digit;
  }
  return n;
}

/** Whether `name` has no character that `toLowerCase()` changes (any past ASCII is taken as one). */
function lowerCase(name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if ((c >= 0x41 && c <= 0x5a) || c > 0x7f) return false;
  }
  return true;
}

/**
 * Whether a response's 'close' has come: Node's `closed` says so on HTTP/1.1. An HTTP/2
 * response has none, and shows no socket once its stream closed (as its 'close' is emitted).
 */
function closedAlready(res: FastifyReply['raw']): boolean {
  const raw = res as { closed?: boolean; stream?: unknown; socket?: unknown };
  return raw.closed === true || (raw.closed === undefined && raw.stream !== undefined && raw.socket === undefined);
}

/** The response is Fastify's handlerTimeout answer. (`signal` is made on first read: 5xx only.) */
function timedOut(request: FastifyRequest): boolean {
  const signal = request.signal as AbortSignal | undefined; // none on an older Fastify 5
  return (
    signal?.aborted === true && (signal.reason as { code?: unknown } | undefined)?.code === 'FST_ERR_HANDLER_TIMEOUT'
  );
}

/** Passes the body's chunks on unchanged, keeping each. */
class Tee extends Transform {
  readonly #source: { receivedEncodedLength?: number };
  readonly #chunks: Chunks;
  readonly #ended: () => void;

  constructor(source: object, chunks: Chunks, ended: () => void) {
    super();
    this.#source = source;
    this.#chunks = chunks;
    this.#ended = ended;
  }

  override _flush(callback: TransformCallback): void {
    this.#ended();
    callback();
  }

  /** Fastify checks the length it received against Content-Length from this property. */
  get receivedEncodedLength(): number | undefined {
    return this.#source.receivedEncodedLength;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#chunks.push(chunk);
    callback(null, chunk);
  }
}

/**
 * Sends `response` from a hook: the handler does not run (no done() unless sending throws). A
 * replay with an ASCII text of its body is sent as that string where Fastify sends a string as
 * it is (see {@link sendsTextAsIs}): Node then writes head and body at once.
 */
function respondWith(
  reply: FastifyReply,
  response: HttpResponse,
  done: (error: Error) => void,
  lengthOwn: boolean,
): void {
  try {
    // A text replay's headers are the stored ones and its own two (see setHeaders): the stored
    // ones say whether it has a content type.
    const headers = (response instanceof TextReplay ? response.stored : response.headers) as Record<
      string,
      string | string[]
    >;
    const text = response.text;
    // Stored without one: Fastify gives a body sent without one a content type (onSend takes it off).
    if (
      headers['content-type'] === undefined &&
      !Object.keys(headers).some((name) => name.toLowerCase() === 'content-type')
    ) {
      untypedReplies.add(reply);
      untyped++;
    }
    const { status } = response;
    setHeaders(reply.code(status), response, lengthOwn).send(
      // A 204 or 304 is sent without a payload: Fastify gives an empty one `Content-Length: 0`,
      // which on a 304 says the resource is empty (RFC 9110 8.6); the first response had none.
      status === 204 || status === 304
        ? undefined
        : text !== undefined && sendsTextAsIs(reply, headers['content-type'])
          ? text
          : response.body,
    );
  } catch (error) {
    done(error as Error);
  }
}

/** Replies the plugin sends a response without a content type on, until its onSend (see respondWith). */
const untypedReplies = new WeakSet<FastifyReply>();
/** How many are in {@link untypedReplies}: none, and onSend looks no further. */
let untyped = 0;

/** Fastify's key of a reply's own serializer (`kReplySerializer`), looked for once. */
let serializerKey: symbol | null | undefined;

/**
 * Whether Fastify's `reply.send()` sends a string as it is, with `contentType` kept: no
 * serializer of the reply's own (which it would run on a string), and a content type it leaves
 * alone. Only its own two defaults are taken: it adds a charset to a JSON type without one, and
 * replaces a type it cannot parse with text/plain.
 */
function sendsTextAsIs(reply: FastifyReply, contentType: unknown): boolean {
  if (contentType !== 'application/json; charset=utf-8' && contentType !== 'text/plain; charset=utf-8') return false;
  serializerKey ??= symbolOf(reply, 'fastify.reply.serializer');
  return serializerKey !== null && (reply as unknown as Record<symbol, unknown>)[serializerKey] === null;
}

/** The lifecycle hooks Fastify keeps on a route's context (null for none). */
interface RouteHooks {
  readonly preParsing?: readonly { name: string }[] | null;
  readonly preValidation?: readonly unknown[] | null;
  readonly preHandler?: readonly { name: string }[] | null;
  /** The route's schema: its headers' is checked before the handler, and no fingerprint covers them. */
  readonly schema?: { readonly headers?: unknown } | null;
  /** The route's body parsers (Fastify's ContentTypeParser). */
  readonly contentTypeParser?: {
    getParser?(contentType: string): { readonly fn?: { readonly name?: string } } | undefined;
  };
}

/**
 * Whether Fastify's own JSON or text parser parses a body of `contentType` on this route: an
 * app's parser may refuse a request (a webhook's signature check), and the early replay skips it.
 */
function parsesByDefault(context: RouteHooks, contentType: unknown): boolean {
  if (typeof contentType !== 'string' || typeof context.contentTypeParser?.getParser !== 'function') return false;
  try {
    const name = context.contentTypeParser.getParser(contentType)?.fn?.name;
    return name === 'defaultJsonParser' || name === 'defaultPlainTextParser';
  } catch {
    return false;
  }
}

/** Whether a route's hooks of one kind are exactly one, named `name`. */
function onlyHook(hooks: readonly { name: string }[] | null | undefined, name: string): boolean {
  return hooks?.length === 1 && hooks[0]?.name === name;
}

/** The bytes teed on the way in, or the parsed body when nothing was teed (no body was sent). */
function bodyBytes(chunks: Chunks | undefined, parsed: unknown): unknown {
  // Hashed, never changed: one chunk needs no copy.
  return chunks === undefined ? parsed : chunks.concat();
}
