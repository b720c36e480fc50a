import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  type EventType,
  bus as globalBus,
  policies as globalPolicies,
  type HoldfastEvent,
  parseOptions,
  realClock,
  stateChangeEvents,
} from '@holdfast/core';
import { type NodeHandler, sendJson } from './health.js';
import { type DashboardOptions, dashboardOptionsSchema } from './options.js';
import { page } from './page.js';
import { DashboardState } from './state.js';

/** The dashboard: a `node:http` handler, plus what it serves at and a way to shut it. */
export interface DashboardHandler extends NodeHandler {
  /** The full path of the page ('' for the root). */
  readonly path: string;
  /** How many pages are following it over server-sent events right now. */
  readonly clients: number;
  /** Ends every open event stream and stops following the bus. Requests afterwards get 503. */
  close(): void;
}

/** A state change is pushed this soon after it happens; changes within it share one snapshot. */
const SETTLE_MS = 50;
/** A comment line this often keeps proxies from closing an idle stream. */
const HEARTBEAT_MS = 15_000;

/**
 * One handler serving a live page of every breaker, failover set, budget and counter:
 * `GET <path>` the page, `GET <path>/snapshot` the JSON, `GET <path>/events` server-sent events.
 * Other URLs go to `next()` (Express) or get 404.
 *
 * @example
 * const dash = dashboard({ path: '/holdfast' });
 * app.use(dash);                                   // Express
 * http.createServer(dash).listen(3000);            // node:http
 * app.register(fastifyDashboard(dash));            // Fastify
 */
export function dashboard(options: DashboardOptions = {}): DashboardHandler {
  const o = parseOptions('dashboard', dashboardOptionsSchema, options);
  const bus = o.bus ?? globalBus;
  const clock = o.clock ?? realClock;
  const state = new DashboardState(bus, o.policies ?? globalPolicies, () => clock.now());
  const streams = new Set<() => void>();
  const html = page(o.path, o.title);
  let closed = false;

  const handler = (req: IncomingMessage, res: ServerResponse, next?: (error?: unknown) => void): void => {
    const url = (req as { originalUrl?: string }).originalUrl ?? req.url ?? '/';
    const pathname = url.split('?', 1)[0] ?? '/';
    if (pathname !== o.path && !pathname.startsWith(`${o.path}/`)) {
      if (next) next();
      else sendJson(res, 404, { error: 'not found' });
      return;
    }
    const route = pathname.slice(o.path.length);
    if (!['', '/', '/snapshot', '/events'].includes(route)) {
      if (next) next();
      else sendJson(res, 404, { error: 'not found' });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (closed) {
      sendJson(res, 503, { error: 'the dashboard is closed' });
      return;
    }
    if (route === '/snapshot') {
      sendJson(res, 200, state.snapshot(), req.method === 'HEAD');
    } else if (route === '/events') {
      if (req.method === 'HEAD') res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' }).end();
      else streams.add(follow(req, res));
    } else {
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'content-length': Buffer.byteLength(html),
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
      });
      res.end(req.method === 'HEAD' ? undefined : html);
    }
  };

  /** Streams snapshots and changes to one page; returns what ends the stream. */
  function follow(req: IncomingMessage, res: ServerResponse): () => void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.flushHeaders();
    // An open stream must not keep the process alive once everything else is done.
    req.socket.unref();
    let congested = false;
    const write = (chunk: string) => {
      if (!congested && !res.write(chunk)) congested = true;
    };
    res.on('drain', () => {
      congested = false;
    });
    const pushSnapshot = () => write(`event: snapshot\ndata: ${JSON.stringify(state.snapshot())}\n\n`);

    let settle: unknown;
    const onChange = (event: HoldfastEvent) => {
      write(`event: change\ndata: ${JSON.stringify(event)}\n\n`);
      settle ??= clock.setTimeout(() => {
        settle = undefined;
        pushSnapshot();
      }, SETTLE_MS);
    };
    const on = bus.on.bind(bus) as (type: EventType, listener: (event: HoldfastEvent) => void) => () => void;
    // Chaos toxics and drills go on the change log too: an injected fault is announced as one.
    const offs = [...stateChangeEvents, 'chaos.toxic' as const, 'chaos.drill' as const].map((type) =>
      on(type, onChange),
    );

    let sinceBeat = 0;
    let tick: unknown;
    const server = (req.socket as { server?: { listening?: boolean } }).server;
    const loop = () => {
      // server.close() waits for open connections: end ours so it can finish.
      if (server?.listening === false) return end();
      pushSnapshot();
      sinceBeat += o.interval;
      if (sinceBeat >= HEARTBEAT_MS) {
        sinceBeat = 0;
        write(': heartbeat\n\n');
      }
      tick = clock.setTimeout(loop, o.interval);
    };

    let ended = false;
    function end(): void {
      if (ended) return;
      ended = true;
      for (const off of offs) off();
      clock.clearTimeout(tick);
      if (settle !== undefined) clock.clearTimeout(settle);
      streams.delete(end);
      if (!res.writableEnded) res.end();
      if (server?.listening === false) {
        // Closing: the connection would sit idle and hold server.close() open. Let it go.
        req.socket.destroySoon();
      } else if (!req.socket.destroyed) {
        // It may carry further requests (keep-alive): let it hold the process again.
        req.socket.ref();
      }
    }
    res.on('close', end);

    write('retry: 2000\n\n');
    pushSnapshot();
    tick = clock.setTimeout(loop, o.interval);
    return end;
  }

  // Object.assign would copy the getter's value once: define it instead.
  return Object.defineProperties(handler, {
    path: { value: o.path, enumerable: true },
    clients: { get: () => streams.size, enumerable: true },
    close: {
      value: () => {
        if (closed) return;
        closed = true;
        for (const end of [...streams]) end();
        state.dispose();
      },
    },
  }) as DashboardHandler;
}

/** The parts of a Fastify instance {@link fastifyDashboard} uses. */
export interface FastifyLikeInstance {
  /** Registers a GET route, as `fastify.get(path, handler)` does. */
  get(
    path: string,
    handler: (request: { raw: IncomingMessage }, reply: { raw: ServerResponse; hijack(): unknown }) => void,
  ): unknown;
}

/**
 * A Fastify plugin serving the dashboard at its `path` (register it without a prefix).
 *
 * @example
 * await app.register(fastifyDashboard(dashboard({ path: '/holdfast' })));
 */
export function fastifyDashboard(handler: DashboardHandler) {
  return (app: FastifyLikeInstance, _options: unknown, done: (error?: Error) => void): void => {
    const route = (request: { raw: IncomingMessage }, reply: { raw: ServerResponse; hijack(): unknown }) => {
      reply.hijack();
      handler(request.raw, reply.raw);
    };
    app.get(handler.path || '/', route);
    app.get(`${handler.path}/*`, route);
    done();
  };
}
