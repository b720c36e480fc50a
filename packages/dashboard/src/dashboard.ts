import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  type Bus,
  type Clock,
  type EventType,
  elapsedTime,
  bus as globalBus,
  policies as globalPolicies,
  HoldfastConfigError,
  type HoldfastEvent,
  parseOptions,
  realClock,
  shieldBus,
  stateChangeEvents,
  warnOnce,
} from '@holdfast/core';
import { type NodeHandler, readOnly, SECURITY_HEADERS, sendJson } from './health.js';
import { type DashboardOptions, dashboardOptionsSchema } from './options.js';
import { PAGE_CSP, page } from './page.js';
import type { StreamView } from './state.js';
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
/** A page that has not taken what it was sent in this long is dropped: it holds its connection for nothing. */
const STALL_MS = 2 * HEARTBEAT_MS;
/** Seconds a page refused past maxClients is asked to wait. */
const RETRY_AFTER_S = 10;

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
  // A user's bus whose unsubscribe is none or throws must not leave close() half done (see shieldBus).
  const bus = shieldBus(o.bus ?? globalBus, 'dashboard');
  const clock = o.clock ?? realClock;
  const state = new DashboardState(
    bus,
    o.policies ?? globalPolicies,
    () => clock.now(),
    (): StreamView => feed.view(),
    o.critical,
  );
  const feed: Feed = new Feed(bus, clock, o, {
    snapshot: () => `event: snapshot\ndata: ${state.json()}\n\n`,
    change: (event) => `event: change\ndata: ${state.eventJson(event)}\n\n`,
  });
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
    if (!readOnly(req, res)) return;
    if (closed) {
      sendJson(res, 503, { error: 'the dashboard is closed' });
      return;
    }
    if (route === '/snapshot') {
      sendText(res, state.json(), req.method === 'HEAD');
    } else if (route === '/events') {
      if (req.method === 'HEAD')
        res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', ...SECURITY_HEADERS }).end();
      else feed.follow(req, res);
    } else {
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'content-length': Buffer.byteLength(html),
        'cache-control': 'no-store',
        'content-security-policy': PAGE_CSP,
        'x-frame-options': 'DENY',
        ...SECURITY_HEADERS,
      });
      res.end(req.method === 'HEAD' ? undefined : html);
    }
  };

  // Object.assign would copy the getter's value once: define it instead.
  return Object.defineProperties(handler, {
    path: { value: o.path, enumerable: true },
    clients: { get: () => feed.size, enumerable: true },
    close: {
      value: () => {
        if (closed) return;
        closed = true;
        feed.close();
        state.dispose();
      },
    },
  }) as DashboardHandler;
}

/** Feeds whose bus would not take a listener, told once each. */
const told = new WeakSet<object>();

/** Writes a JSON text, never cached. */
function sendText(res: ServerResponse, text: string, headOnly: boolean): void {
  res.writeHead(200, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...SECURITY_HEADERS,
  });
  res.end(headOnly ? undefined : text);
}

/** One page following the events: its response, and what ends it. */
interface Follower {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  write(chunk: string | Buffer): void;
  end(): void;
}

/**
 * The server-sent events of every open page, from one set of bus listeners and one timer: a
 * snapshot is built once per interval (or per settled change) and written to every page, so
 * the cost of the page does not grow with the number of tabs open on it. A snapshot is encoded
 * once, and the same bytes are written to every page: a page that does not read holds a reference
 * to them, not a copy (40 such pages on 3,000 breakers held 152 MB in copies).
 */
class Feed {
  readonly #pages = new Set<Follower>();
  readonly #elapsed: () => number;
  /** Codes warned of already: a flood of pages is told once, and counted in the snapshot. */
  readonly #told = new Set<string>();
  #dropped = 0;
  #refused = 0;
  #offs: (() => void)[] = [];
  #tick: unknown;
  #settle: unknown;
  /** What the running timer waits, and what is due after it: ms to the next snapshot and the next heartbeat. */
  #due = { step: 0, snapshot: 0, beat: 0 };
  /** The last snapshot written, and when: a page that opens within the interval gets it as it is. */
  #latest: { readonly bytes: Buffer; readonly at: number } | undefined;
  readonly interval: number;

  constructor(
    readonly bus: Bus,
    readonly clock: Clock,
    readonly limits: { readonly interval: number; readonly maxClients: number; readonly maxBufferedBytes: number },
    readonly text: { readonly snapshot: () => string; readonly change: (event: HoldfastEvent) => string },
  ) {
    this.interval = limits.interval;
    this.#elapsed = elapsedTime(clock);
  }

  /** The stream's own counts, for the snapshot. */
  view(): StreamView {
    return { clients: this.#pages.size, dropped: this.#dropped, refused: this.#refused };
  }

  get size(): number {
    return this.#pages.size;
  }

  /** Streams snapshots and changes to one page until it hangs up or the feed closes. */
  follow(req: IncomingMessage, res: ServerResponse): void {
    // Gone before it got here (an async middleware in front): its 'close' came and will not again.
    if (res.destroyed) return;
    const { maxClients, maxBufferedBytes } = this.limits;
    if (this.#pages.size >= maxClients) {
      this.#refused++;
      this.#tell(
        'HOLDFAST_DASHBOARD_FULL',
        `${maxClients} pages follow the event stream (maxClients): more are refused`,
      );
      res.setHeader('retry-after', String(RETRY_AFTER_S));
      sendJson(res, 503, { error: `too many pages follow the dashboard (maxClients ${maxClients})` });
      return;
    }
    if (this.#pages.size === 0) {
      try {
        this.#start();
      } catch (error) {
        // A user's bus whose on() throws: a 503, told once; thrown, it crashed a node:http server.
        warnOnce(told, this, 'HOLDFAST_BUS_ERROR', 'dashboard: the bus would not take a listener', error);
        sendJson(res, 503, { error: 'the dashboard cannot follow the bus' });
        return;
      }
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      // no-transform: compression middleware (and proxies) would hold each event until a window fills.
      'cache-control': 'no-store, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      ...SECURITY_HEADERS,
    });
    res.flushHeaders();
    // An open stream must not keep the process alive once everything else is done.
    req.socket.unref();
    /** Since when the page has had more unsent than its socket takes at once; undefined once drained. */
    let congested: number | undefined;
    let ended = false;
    const server = serverOf(req);
    const page: Follower = {
      req,
      res,
      // A page that does not read gets nothing more until it drains (at most a snapshot buffered),
      // and is dropped when it has too much left unsent an interval on, or any for too long, as
      // an event is due. Not at once: a state change right after a large snapshot dropped every
      // page that could not take it in those milliseconds (any not on loopback).
      write: (chunk) => {
        if (ended) return;
        if (congested === undefined) {
          if (!res.write(chunk)) congested = this.#elapsed();
          return;
        }
        const behind = this.#elapsed() - congested;
        const left = res.writableLength;
        if (left > maxBufferedBytes && behind >= this.interval)
          this.#drop(page, `left ${left} bytes unsent, past maxBufferedBytes (${maxBufferedBytes})`);
        else if (behind >= STALL_MS) this.#drop(page, `had not caught up for ${STALL_MS / 1000} s`);
      },
      end: () => {
        if (ended) return;
        ended = true;
        this.#pages.delete(page);
        if (this.#pages.size === 0) this.#stop();
        if (!res.writableEnded) res.end();
        if (req.socket.writableLength > 0) {
          // A page that does not read (close(), or the server closing): ended to flush, it held
          // what it was not sent and its connection until it read, and a write pending keeps
          // the process alive, unref'd or not. Cut it.
          req.socket.destroy();
        } else if (server?.listening === false) {
          // Closing: the connection would sit idle and hold server.close() open. Let it go.
          req.socket.destroySoon();
        } else if (!req.socket.destroyed) {
          // It may carry further requests (keep-alive): let it hold the process again.
          req.socket.ref();
        }
      },
    };
    res.on('drain', () => {
      congested = undefined;
    });
    res.on('close', page.end);
    this.#pages.add(page);
    page.write('retry: 2000\n\n');
    page.write(this.#snapshot(false));
  }

  /** Ends every page's stream and stops following the bus. */
  close(): void {
    for (const page of [...this.#pages]) page.end();
  }

  /** Lets a page that does not keep up go, with what it held: its connection is cut, not ended. */
  #drop(page: Follower, why: string): void {
    this.#dropped++;
    this.#tell('HOLDFAST_DASHBOARD_SLOW_PAGE', `dropped an event-stream page that ${why}`);
    page.end();
    page.req.socket.destroy();
  }

  /** A process warning, once per code: the counts go on in the snapshot's `stream`. */
  #tell(code: string, text: string): void {
    if (this.#told.has(code)) return;
    this.#told.add(code);
    process.emitWarning(`dashboard: ${text}`, { type: 'HoldfastWarning', code });
  }

  /** A snapshot event: the one just built if `fresh` is false and it is recent, else a new one. */
  #snapshot(fresh: boolean): Buffer {
    const now = this.clock.now();
    if (!fresh && this.#latest !== undefined && now - this.#latest.at < this.interval) return this.#latest.bytes;
    const bytes = Buffer.from(this.text.snapshot());
    this.#latest = { bytes, at: now };
    return bytes;
  }

  #broadcast(chunk: string | Buffer): void {
    for (const page of this.#pages) page.write(chunk);
  }

  #start(): void {
    const on = this.bus.on.bind(this.bus) as (type: EventType, listener: (event: HoldfastEvent) => void) => () => void;
    // Chaos toxics and drills go on the change log too: an injected fault is announced as one.
    const offs: (() => void)[] = [];
    try {
      for (const type of [...stateChangeEvents, 'chaos.toxic' as const, 'chaos.drill' as const]) {
        offs.push(on(type, this.#onChange));
      }
    } catch (error) {
      for (const off of offs) off();
      throw error;
    }
    this.#offs = offs;
    this.#due = { step: 0, snapshot: this.interval, beat: HEARTBEAT_MS };
    this.#next();
  }

  /**
   * Sets the one timer for what is due first, a snapshot or a heartbeat. Counted in intervals, a
   * 60 s interval sent no heartbeat, and proxies cut streams idle for 30-60 s.
   */
  #next(): void {
    const due = this.#due;
    due.step = Math.min(due.snapshot, due.beat);
    this.#tick = this.clock.setTimeout(this.#loop, due.step);
  }

  #stop(): void {
    for (const off of this.#offs.splice(0)) off();
    this.clock.clearTimeout(this.#tick);
    if (this.#settle !== undefined) this.clock.clearTimeout(this.#settle);
    this.#tick = undefined;
    this.#settle = undefined;
    this.#latest = undefined;
  }

  readonly #onChange = (event: HoldfastEvent): void => {
    // The last page may have gone during this very dispatch (close() from another listener).
    if (this.#pages.size === 0) return;
    // An event's text may hold what its emitter did not hide (a reason a user wrote, a user's own policy).
    this.#broadcast(this.text.change(event));
    // Changes within SETTLE_MS share one snapshot.
    this.#settle ??= this.clock.setTimeout(() => {
      this.#settle = undefined;
      if (this.#pages.size > 0) this.#broadcast(this.#snapshot(true));
    }, SETTLE_MS);
  };

  readonly #loop = (): void => {
    this.#tick = undefined;
    // server.close() waits for open connections: end ours so it can finish.
    for (const page of [...this.#pages]) if (serverOf(page.req)?.listening === false) page.end();
    if (this.#pages.size === 0) return;
    const due = this.#due;
    due.snapshot -= due.step;
    due.beat -= due.step;
    if (due.snapshot <= 0) {
      due.snapshot = this.interval;
      this.#broadcast(this.#snapshot(true));
    }
    if (due.beat <= 0 && this.#pages.size > 0) {
      due.beat = HEARTBEAT_MS;
      this.#broadcast(': heartbeat\n\n');
    }
    // Every page may have been dropped meanwhile: a timer set now would run beside the next #start()'s.
    if (this.#pages.size > 0) this.#next();
  };
}

const serverOf = (req: IncomingMessage) => (req.socket as { server?: { listening?: boolean } }).server;

/** The parts of a Fastify instance {@link fastifyDashboard} uses. */
export interface FastifyLikeInstance {
  /** The prefix the plugin was registered with (`app.register(plugin, { prefix })`); '' for none. */
  readonly prefix?: string;
  /**
   * Registers a route for every method, as `fastify.all(path, handler)` does: the dashboard
   * answers GET and HEAD, and 405 with `Allow: GET, HEAD` to the others.
   */
  all(
    path: string,
    handler: (request: { raw: IncomingMessage }, reply: { raw: ServerResponse; hijack(): unknown }) => void,
  ): unknown;
}

/**
 * A Fastify plugin serving the dashboard at its `path`. Registered with a `prefix`, the path is
 * still the full one, as with Express: `dashboard({ path: '/ops/holdfast' })` under `prefix: '/ops'`;
 * a path not under the prefix is refused (every route would 404).
 *
 * @example
 * await app.register(fastifyDashboard(dashboard({ path: '/holdfast' })));
 */
export function fastifyDashboard(handler: DashboardHandler) {
  return (app: FastifyLikeInstance, _options: unknown, done: (error?: Error) => void): void => {
    const prefix = (app.prefix ?? '').replace(/\/+$/, '');
    const path = handler.path;
    if (prefix !== '' && path !== prefix && !path.startsWith(`${prefix}/`)) {
      const message = `does not hold the dashboard's path "${path || '/'}" (every route would 404): give dashboard({ path: "${prefix}${path}" }), or register without a prefix`;
      done(new HoldfastConfigError('fastifyDashboard', [{ path: 'prefix', message, value: prefix }]));
      return;
    }
    const route = (request: { raw: IncomingMessage }, reply: { raw: ServerResponse; hijack(): unknown }) => {
      reply.hijack();
      handler(request.raw, reply.raw);
    };
    // Fastify puts the prefix in front of each route: registered as the rest of the path, each `:`
    // as its router writes a `:` that starts no parameter (`::`): `/ops::dash` 404'd.
    const rest = path.slice(prefix.length).replace(/:/g, '::');
    try {
      app.all(rest || '/', route);
      app.all(`${rest}/*`, route);
    } catch (error) {
      // A path its router refuses (a `*` mid-way): told through done(), not thrown out of the plugin
      // (uncaught, and ready() waited for avvio's timeout).
      const why = error instanceof Error ? error.message : String(error);
      const message = `is a path Fastify's router does not take (${why})`;
      done(new HoldfastConfigError('fastifyDashboard', [{ path: 'path', message, value: path }]));
      return;
    }
    done();
  };
}
