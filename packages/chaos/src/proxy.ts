import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import {
  type Bus,
  DisposedError,
  bus as globalBus,
  HoldfastConfigError,
  parseOptions,
  Redactor,
  shieldBus,
  warnOnce,
} from '@holdfast/core';
import { type FaultProxyOptions, faultProxyOptionsSchema, ownAddress, ownAddressIssue } from './options.js';
import { type FaultScope, faultScope } from './scope.js';
import { onSwitchOff, state } from './switch.js';
import { type ActiveToxic, matches, type Toxic, toxicSchema } from './toxics.js';

/** One connection through the proxy, as `proxy.connections()` lists it. */
export interface ProxyConnection {
  /** The id a toxic's `connection` option names. */
  readonly id: number;
  /** The client's port on loopback: which client this is. */
  readonly clientPort: number | undefined;
  /** Bytes forwarded client to server so far. */
  readonly upstreamBytes: number;
  /** Bytes forwarded server to client so far. */
  readonly downstreamBytes: number;
}

/** What `proxy.snapshot()` returns: plain JSON. */
export interface FaultProxySnapshot {
  /** The proxy's name (its events' `source`). */
  readonly name: string;
  /** Whether it accepts connections now (false after `refuse()` or `kill()`). */
  readonly listening: boolean;
  /** `host:port` it listens on (an IPv6 host in brackets: `[::1]:6379`). */
  readonly address: string;
  /** `host:port` it forwards to (an IPv6 host in brackets). */
  readonly target: string;
  /** Connections open now. */
  readonly connections: number;
  /** Connections accepted since start. */
  readonly accepted: number;
  /** The toxics on now, in the order they were added. */
  readonly toxics: readonly {
    /** Its name. */
    readonly name: string;
    /** Its type. */
    readonly type: string;
    /** Which way it acts. */
    readonly direction: string;
  }[];
}

/** A toxic in place; `remove()` takes it off. */
export interface ToxicHandle {
  /** The toxic's name on its proxy. */
  readonly name: string;
  /**
   * Takes its toxic off and puts back the one of its name it replaced, if that is still live.
   * Harmless once its toxic is off (removed, spent, or replaced since: the later one stays on); in
   * a drill's step, as `clear()` there, it takes off the one on under its name, but another
   * running drill's.
   */
  remove(): void;
}

/** An in-process TCP proxy that forwards to one target and applies toxics on the way. */
export interface FaultProxy {
  /** `127.0.0.1` unless `host` said otherwise. */
  readonly host: string;
  /** The port it listens on (a free one unless `port` was given). */
  readonly port: number;
  /** `http://host:port`, for HTTP upstreams. */
  readonly url: string;
  /** Adds a toxic; it acts on open connections at once and on new ones. */
  add(toxic: Toxic): ToxicHandle;
  /** Removes the toxic of that name; false if there was none. */
  remove(name: string): boolean;
  /** Removes every toxic (in a drill's step, but another running drill's; after its drill ended, none). */
  clear(): void;
  /** Resets (TCP RST) every open connection now. */
  resetAll(): void;
  /** Stops listening: new connections are refused (ECONNREFUSED). Open ones carry on. */
  refuse(): Promise<void>;
  /** Listens again on the same port (once no other running drill's step refuses it; in a step, until its drill ends: a refusal of yours is back then; after its drill ended, a step's call does nothing). */
  accept(): Promise<void>;
  /** A dead server: refuses new connections and resets the open ones. `restore()` undoes it. */
  kill(): Promise<void>;
  /** A hung server: accepts connections and holds every byte, and a close, both ways. `restore()` undoes it. */
  freeze(): ToxicHandle;
  /** Removes every toxic and listens again if it had stopped (in a drill's step: but another running drill's faults). */
  restore(): Promise<void>;
  /** The open connections. */
  connections(): ProxyConnection[];
  /** What the proxy is doing now, as plain JSON. */
  snapshot(): FaultProxySnapshot;
  /**
   * Destroys every socket and stops listening; resolves once all is closed. Every action after it
   * (`add()`, `kill()`, `restore()`...) throws `DisposedError`, or rejects with it when it returns a
   * promise; `snapshot()`, `connections()`, a toxic handle's `remove()` and `close()` still answer.
   */
  close(): Promise<void>;
}

/**
 * Starts an in-process TCP proxy on a free loopback port in front of `target` (an HTTP server,
 * PostgreSQL, Redis: anything on TCP). Point the client at `proxy.port`, then add toxics at run
 * time: latency, bandwidth, reset, blackhole, drop, slicer, limit.
 *
 * @example
 * const proxy = await faultProxy({ target: { host: '127.0.0.1', port: 6379 } });
 * const lag = proxy.add({ type: 'latency', latency: 200, jitter: 50 });
 * lag.remove();
 * await proxy.close();
 */
export async function faultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const parsed = parse(options);
  const proxy = new ToxicProxy(
    parsed.name,
    parsed.host,
    parsed.target,
    shieldBus(parsed.bus ?? globalBus, parsed.name),
    parsed.random,
  );
  if (parsed.port === 0) await proxy.listenOutsideEphemeral();
  else await proxy.listen(parsed.port);
  proxy.obeySwitch();
  return proxy;
}

/**
 * Where the system's ephemeral ports start (Linux: what `listen(0)` and outgoing connections are
 * given); 0 elsewhere, or where it cannot be read.
 */
function ephemeralLow(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'latin1').trim().split(/\s+/)[0]) || 0;
  } catch {
    return 0;
  }
}

const redactor = new Redactor();
/** Proxies whose server failed to accept a connection, told once each. */
const toldAccept = new WeakSet<object>();

/** A refused value as the error shows it: a URL's credentials, or what comes before a `@`, hidden. */
function hide(value: unknown): unknown {
  if (typeof value !== 'string') return value;
  const shown = redactor.text(redactor.url(value));
  // A URL's were hidden above; `user:password@host` is no URL, its user info goes here.
  const at = shown.lastIndexOf('@');
  return at < 0 || shown.includes('://') ? shown : `***${shown.slice(at)}`;
}

/** The options parsed; a refused value is shown without a password it may hold (a target given as a URL). */
function parse(options: unknown): ReturnType<typeof parseOptions<typeof faultProxyOptionsSchema>> {
  try {
    return parseOptions('faultProxy', faultProxyOptionsSchema, options);
  } catch (error) {
    if (!(error instanceof HoldfastConfigError)) throw error;
    throw new HoldfastConfigError(
      'faultProxy',
      error.issues.map((issue) => ('value' in issue ? { ...issue, value: hide(issue.value) } : issue)),
    );
  }
}

class ToxicProxy implements FaultProxy {
  readonly #server: Server;
  readonly #links = new Set<Link>();
  readonly #toxics = new Map<string, ActiveToxic>();
  /** Budgets left of `drop` toxics, shared by every connection they match. */
  readonly #dropsLeft = new Map<string, number>();
  #counter = 0;
  #ids = 0;
  #accepted = 0;
  #port = 0;
  #closed = false;
  /** Whether the last call outside a drill's steps asked it to listen (`accept()`, `restore()`) or not (`refuse()`, `kill()`). */
  #wanted = true;
  /** The drills whose steps refused it (or killed it) and have not ended nor accepted since: it listens once none is left. */
  readonly #refusedBy = new Set<FaultScope>();
  /** The drills whose steps accepted (or restored) it and have not ended nor refused since: it listens meanwhile, whatever `#wanted`. */
  readonly #acceptedBy = new Set<FaultScope>();
  /** Of each toxic: the drill whose step put it on (if one did), and the toxic of its name it replaced (and that one's drops left). */
  readonly #owners = new WeakMap<
    ActiveToxic,
    {
      readonly scope: FaultScope | undefined;
      readonly under: ActiveToxic | undefined;
      readonly left: number | undefined;
    }
  >();
  /** The toxics their handles took off (under another of their name, they stay off). */
  readonly #removed = new WeakSet<ActiveToxic>();
  /** The listen or stop under way: the next waits for it. */
  #settling: Promise<void> = Promise.resolve();
  /** Stops `chaosSwitch.off()` restoring this proxy (at close). */
  #unswitch: (() => void) | undefined;

  constructor(
    readonly name: string,
    readonly host: string,
    readonly target: { readonly host: string; readonly port: number },
    readonly bus: Bus,
    readonly random: () => number,
  ) {
    this.#server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.#connect(socket));
    // A connection it could not accept (EMFILE: out of file descriptors) crashed the process as an
    // uncaught 'error': told once as a process warning, and it goes on listening. A listen that
    // failed is listen()'s to throw.
    this.#server.on('error', (error) => {
      if (this.#server.listening)
        warnOnce(toldAccept, this, 'HOLDFAST_PROXY_ERROR', `${name}: could not accept a connection`, error);
    });
  }

  get port(): number {
    return this.#port;
  }

  get url(): string {
    return `http://${hostPort(this.host, this.#port)}`;
  }

  async listen(port: number): Promise<void> {
    this.#server.listen(port, this.host);
    try {
      await once(this.#server, 'listening');
    } catch (error) {
      // Node's own says `listen EADDRINUSE ... 127.0.0.1:6380`: which proxy, and why, said here.
      const code = (error as NodeJS.ErrnoException).code;
      const why = code === 'EADDRINUSE' ? ': the port is in use' : '';
      throw Object.assign(
        new Error(`${this.name}: cannot listen on ${hostPort(this.host, port)}${why} (${code})`, { cause: error }),
        {
          code,
        },
      );
    }
    const address = this.#server.address();
    this.#port = typeof address === 'object' && address !== null ? address.port : port;
  }

  /**
   * Listens on a free port below the system's ephemeral range (Linux: from 10,000 to 19,999 where
   * that range starts above them), else on any free port. A port from that range was taken, while
   * the proxy refused (`kill()`, `refuse()`), by another socket's `listen(0)` or by an outgoing
   * connection's local port, and `restore()` then failed with EADDRINUSE: a drill's restore step
   * threw, and its "dead" server never came back (seen once in CI, where test files run side by
   * side).
   */
  async listenOutsideEphemeral(): Promise<void> {
    // From 10,000 (above the well-known services') to below 20,000 (this repo's test harness,
    // `test/support/ports.ts`, hands its own servers ports from 20,000 up), or the range's start.
    const below = Math.min(ephemeralLow(), 20_000);
    for (let tries = 0; below > 11_000 && tries < 50; tries++) {
      const port = 10_000 + Math.floor(Math.random() * (below - 10_000));
      // Its target's port (a target not up yet) is no free port for it: it would connect to itself.
      if (ownAddress(this.host, port, this.target)) continue;
      try {
        return await this.listen(port);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error;
      }
    }
    await this.listen(0);
    if (ownAddress(this.host, this.#port, this.target)) {
      this.#server.close();
      // The free port it was given is its target's (one not up yet).
      throw new HoldfastConfigError('faultProxy', [ownAddressIssue]);
    }
  }

  /**
   * The kill switch turns a proxy's faults off too: `chaosSwitch.off()` restores it (every toxic
   * off, announced, held bytes let through, listening again), and while off it injects nothing.
   */
  obeySwitch(): void {
    // Every fault off, whatever context (a drill's step) turned the switch off.
    this.#unswitch = onSwitchOff(() => void faultScope.exit(() => this.restore()).catch(() => {}));
  }

  add(toxic: Toxic): ToxicHandle {
    // Closed, it would be announced on and never off: shown on for good by the dashboard and metrics.
    this.#live();
    const parsed = parseOptions('faultProxy.add', toxicSchema, toxic);
    // Connection ids are never reused: a toxic for one that is not open would never act, yet be shown on.
    const id = parsed.connection;
    if (id !== undefined && !this.#open(id))
      throw new HoldfastConfigError('faultProxy.add', [
        { path: 'connection', message: 'is not the id of an open connection (see proxy.connections())', value: id },
      ]);
    const name = parsed.name ?? `${parsed.type}-${++this.#counter}`;
    const direction =
      parsed.direction ?? (parsed.type === 'blackhole' || parsed.type === 'reset' ? 'both' : 'downstream');
    // The kill switch is off, or the drill whose step this is has ended: validated, and put on
    // nowhere, as an injection passes calls through.
    const scope = faultScope.getStore();
    if (state.off || scope?.ended) return { name, remove: () => {} };
    const active = { ...parsed, name, direction } as ActiveToxic;
    const under = this.#toxics.get(name);
    this.#owners.set(active, { scope, under, left: this.#dropsLeft.get(name) });
    this.#remove(name);
    this.#put(active, active.type === 'drop' ? (active.bytes ?? active.chunks ?? 1) : undefined);
    scope?.opened(() => this.#takeOff(active));
    return {
      name,
      remove: () => {
        // A step still running after its drill ended takes off nothing, as remove(name) there.
        if (faultScope.getStore()?.ended) return;
        this.#removed.add(active);
        // Its own; in a running drill's step, another of its name put on since too, as clear()
        // there takes it: but not another running drill's (a freeze of its own, mid-outage).
        // Outside drills, a later toxic of its name is another add's, for its handle to undo.
        const on = this.#toxics.get(name);
        if (on === active || (on !== undefined && scope?.ended === false && !this.#othersOn(on, scope)))
          this.#takeOff(on);
      },
    };
  }

  /**
   * Takes `active` off if it is on, and puts back the one of its name it replaced: the user's
   * setup, or another drill's still on; never one of a drill that has ended (its end found this
   * one on, and left it), nor one its handle took off.
   */
  #takeOff(active: ActiveToxic): void {
    if (!this.has(active)) return;
    this.#remove(active.name);
    let back = this.#owners.get(active);
    while (back?.under !== undefined && this.#gone(back.under)) back = this.#owners.get(back.under);
    if (back?.under !== undefined && !this.#closed) this.#put(back.under, back.left);
  }

  /** Whether `toxic` is a running drill's other than `scope`'s: one for that drill to take off. */
  #othersOn(toxic: ActiveToxic, scope: FaultScope | undefined): boolean {
    const owner = this.#owners.get(toxic)?.scope;
    return owner !== undefined && owner !== scope && !owner.ended;
  }

  /**
   * Whether `toxic`, replaced by another of its name, must not come back on: its handle took it
   * off, its drill ended, or its connection closed (it could never act, yet be shown on).
   */
  #gone(toxic: ActiveToxic): boolean {
    return (
      this.#removed.has(toxic) ||
      this.#owners.get(toxic)?.scope?.ended === true ||
      (toxic.connection !== undefined && !this.#open(toxic.connection))
    );
  }

  /** Whether connection `id` is open. */
  #open(id: number): boolean {
    for (const link of this.#links) if (link.id === id) return true;
    return false;
  }

  #put(active: ActiveToxic, dropsLeft: number | undefined): void {
    this.#toxics.set(active.name, active);
    if (dropsLeft !== undefined) this.#dropsLeft.set(active.name, dropsLeft);
    this.#report(active, true);
    for (const link of this.#links) link.toxicAdded(active);
  }

  remove(name: string): boolean {
    this.#live();
    // A step still running after its drill ended: what is on now is not its drill's to take off.
    if (faultScope.getStore()?.ended) return false;
    return this.#remove(name);
  }

  #remove(name: string): boolean {
    const toxic = this.#toxics.get(name);
    if (toxic === undefined) return false;
    this.#toxics.delete(name);
    this.#dropsLeft.delete(name);
    this.#report(toxic, false);
    for (const link of this.#links) link.toxicRemoved(toxic);
    return true;
  }

  clear(): void {
    this.#live();
    this.#clear();
  }

  #clear(): void {
    // In a drill's step, another drill's toxics still on are that drill's to take off.
    const scope = faultScope.getStore();
    // A step still running after its drill ended: what is on now is not its drill's to take off.
    if (scope?.ended) return;
    for (const toxic of [...this.#toxics.values()])
      if (scope === undefined || !this.#othersOn(toxic, scope)) this.#remove(toxic.name);
  }

  resetAll(): void {
    this.#live();
    if (state.off || faultScope.getStore()?.ended) return;
    for (const link of this.#links) link.reset();
  }

  refuse(): Promise<void> {
    if (this.#closed) return Promise.reject(new DisposedError(this.name));
    const scope = faultScope.getStore();
    if (state.off || scope?.ended) return this.#settle();
    if (scope === undefined) {
      this.#wanted = false;
      this.#acceptedBy.clear();
    } else if (!this.#refusedBy.has(scope)) {
      // A drill's step refused: its end takes its refusal off, however it ends. It listens again
      // once no other drill refuses it, unless it was refusing before (the user's setup), which
      // the drill leaves as it found it.
      this.#refusedBy.add(scope);
      this.#acceptedBy.delete(scope);
      scope.opened(() => {
        this.#refusedBy.delete(scope);
        return this.#settle();
      });
    }
    return this.#settle();
  }

  accept(): Promise<void> {
    // Closed, it never listens again: no call may look as if it had opened the port.
    if (this.#closed) return Promise.reject(new DisposedError(this.name));
    const scope = faultScope.getStore();
    if (scope?.ended) return this.#settle();
    // A drill's step takes off its own refusal, and the user's until its drill ends (the drill
    // leaves the proxy as it found it), not another drill's still on.
    if (scope === undefined) {
      this.#refusedBy.clear();
      this.#wanted = true;
    } else {
      this.#refusedBy.delete(scope);
      if (!this.#wanted && !this.#acceptedBy.has(scope)) {
        this.#acceptedBy.add(scope);
        scope.opened(() => {
          this.#acceptedBy.delete(scope);
          return this.#settle();
        });
      }
    }
    return this.#settle();
  }

  /**
   * Listens or stops as the last of `accept()`, `refuse()`, `kill()`, `restore()` and `close()`
   * asked, once any listen under way has ended: one of them racing another (a drill's restore
   * step and the test's close()) can no more leave it listening after close().
   */
  #settle(): Promise<void> {
    const next = this.#settling.then(async () => {
      const wanted = (this.#wanted || this.#acceptedBy.size > 0) && this.#refusedBy.size === 0 && !this.#closed;
      if (wanted && !this.#server.listening) await this.listen(this.#port);
      // Not awaited: the server's close waits for the open connections, which carry on by design
      // (a pooled client keeps its socket).
      else if (!wanted && this.#server.listening) this.#server.close();
    });
    this.#settling = next.catch(() => {});
    return next;
  }

  async kill(): Promise<void> {
    this.#live();
    const refused = this.refuse();
    this.resetAll();
    await refused;
  }

  freeze(): ToxicHandle {
    return this.add({ type: 'blackhole', name: 'freeze' });
  }

  async restore(): Promise<void> {
    this.#live();
    this.clear();
    await this.accept();
  }

  connections(): ProxyConnection[] {
    return [...this.#links].map((link) => link.view());
  }

  snapshot(): FaultProxySnapshot {
    return {
      name: this.name,
      listening: this.#server.listening,
      address: hostPort(this.host, this.#port),
      target: hostPort(this.target.host, this.target.port),
      connections: this.#links.size,
      accepted: this.#accepted,
      toxics: [...this.#toxics.values()].map((t) => ({ name: t.name, type: t.type, direction: t.direction })),
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#unswitch?.();
    // Toxics still on go off with the proxy, and say so: the dashboard and the metrics would
    // otherwise show them on for good, one more for every proxy closed with a toxic on.
    faultScope.exit(() => this.#clear());
    // A listen under way (a restore() not yet done) ends first, then the server closes.
    await this.#settling;
    const closed = this.#server.listening ? new Promise((resolve) => this.#server.close(resolve)) : undefined;
    for (const link of this.#links) link.destroy();
    await closed;
    await Promise.all([...this.#links].map((link) => link.closed));
  }

  /**
   * Throws DisposedError once closed: every action after `close()` (a drill's step, a test's
   * call) says so, as a disposed breaker does, rather than inject nothing and pass.
   */
  #live(): void {
    if (this.#closed) throw new DisposedError(this.name);
  }

  /** The toxics acting on connection `id` one way, in the order they were added. */
  toxicsFor(id: number, way: 'upstream' | 'downstream'): ActiveToxic[] {
    const found: ActiveToxic[] = [];
    for (const toxic of this.#toxics.values()) if (matches(toxic, id, way)) found.push(toxic);
    return found;
  }

  /** Whether `toxic` is still on (not removed, nor replaced by another of its name). */
  has(toxic: ActiveToxic): boolean {
    return this.#toxics.get(toxic.name) === toxic;
  }

  /**
   * Takes up to `wanted` units from a drop toxic's budget; once it is spent, takes it off for good
   * and puts back the one of its name it replaced.
   */
  takeDrop(drop: ActiveToxic, wanted: number): number {
    // Taken off while the chunk waited behind another toxic: its budget is another's of its name.
    if (!this.has(drop)) return 0;
    const left = this.#dropsLeft.get(drop.name) ?? 0;
    const taken = Math.min(left, wanted);
    if (left - taken > 0) this.#dropsLeft.set(drop.name, left - taken);
    else {
      this.#removed.add(drop);
      this.#takeOff(drop);
    }
    return taken;
  }

  #connect(client: Socket): void {
    if (this.#closed) {
      client.destroy();
      return;
    }
    this.#accepted++;
    const server = createConnection({ host: this.target.host, port: this.target.port, allowHalfOpen: true });
    server.setNoDelay(true);
    const link = new Link(this, ++this.#ids, client, server);
    this.#links.add(link);
    void link.closed.then(() => {
      this.#links.delete(link);
      // Its own toxics can act on no other connection: taken off, announced off, and the one of
      // its name each replaced put back, as a spent drop does.
      for (const toxic of [...this.#toxics.values()])
        if (toxic.connection === link.id) {
          this.#removed.add(toxic);
          this.#takeOff(toxic);
        }
    });
    for (const toxic of this.#toxics.values()) link.toxicAdded(toxic);
  }

  #report(toxic: ActiveToxic, active: boolean): void {
    if (!this.bus.wants('chaos.toxic')) return;
    this.bus.emit({
      type: 'chaos.toxic',
      source: this.name,
      time: Date.now(),
      toxic: toxic.type,
      name: toxic.name,
      direction: toxic.direction,
      active,
      target: hostPort(this.target.host, this.target.port),
    });
  }
}

/** `host:port`, an IPv6 host in brackets (`[::1]:6379`), as URLs and Node's own messages write it. */
function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** One client connection and its connection to the target, with a pump each way. */
class Link {
  readonly closed: Promise<void>;
  readonly #abort = new AbortController();
  readonly #up: Pump;
  readonly #down: Pump;
  readonly #resets = new Map<string, NodeJS.Timeout>();
  #done = false;

  constructor(
    readonly proxy: ToxicProxy,
    readonly id: number,
    readonly client: Socket,
    readonly server: Socket,
  ) {
    this.#up = new Pump(this, 'upstream', client, server);
    this.#down = new Pump(this, 'downstream', server, client);
    let open = 2;
    this.closed = new Promise((resolve) => {
      const gone = () => {
        if (--open === 0) resolve();
      };
      client.once('close', gone);
      server.once('close', gone);
    });
    // An error on one side (a reset, a refused connect) is passed on to the other as a reset.
    const fail = () => this.reset();
    client.on('error', fail);
    server.on('error', fail);
    // A socket closed cleanly has ended both ways, but what it sent may still be in its pump
    // (queued, held by a toxic): that pump ends the link once it has forwarded it all.
    client.once('close', (hadError) => this.#gone(this.#up, hadError));
    server.once('close', (hadError) => this.#gone(this.#down, hadError));
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  view(): ProxyConnection {
    return {
      id: this.id,
      clientPort: this.client.remotePort,
      upstreamBytes: this.#up.forwarded,
      downstreamBytes: this.#down.forwarded,
    };
  }

  toxicAdded(toxic: ActiveToxic): void {
    // A one-way reset waits for data that way (see Pump); this is the reset of a whole connection.
    if (toxic.type !== 'reset' || toxic.direction !== 'both') return;
    if (toxic.connection !== undefined && toxic.connection !== this.id) return;
    if (toxic.after === 0) {
      this.reset();
      return;
    }
    const timer = setTimeout(() => this.reset(), toxic.after);
    timer.unref();
    this.#resets.set(toxic.name, timer);
  }

  toxicRemoved(toxic: ActiveToxic): void {
    clearTimeout(this.#resets.get(toxic.name));
    this.#resets.delete(toxic.name);
    // A blackhole lifted, a limit gone: the pumps look at their toxics again.
    this.#up.wake();
    this.#down.wake();
  }

  reset(): void {
    if (this.#done) return;
    this.#finish();
    resetSocket(this.client);
    resetSocket(this.server);
  }

  destroy(): void {
    if (this.#done) return;
    this.#finish();
    this.client.destroy();
    this.server.destroy();
  }

  /** Both ends done (FIN each way, all forwarded): the link goes once what is written is flushed. */
  halfClosed(): void {
    if (!this.#up.finished || !this.#down.finished) return;
    this.client.destroySoon();
    this.server.destroySoon();
  }

  #gone(from: Pump, hadError: boolean): void {
    if (hadError || from.finished) this.destroy();
  }

  #finish(): void {
    this.#done = true;
    this.#abort.abort();
    for (const timer of this.#resets.values()) clearTimeout(timer);
    this.#resets.clear();
    this.#up.wake();
    this.#down.wake();
  }
}

function resetSocket(socket: Socket): void {
  if (socket.destroyed) return;
  // A socket still connecting has no handle to reset; destroying it is all there is. Nor can one
  // whose FIN is still on its way (ended, not finished): libuv refuses the RST (EINVAL), and Node
  // then drops the handle unclosed, so 'close' never comes, the link stays for good and close() hangs.
  // (Finished implies ended: they differ exactly while the FIN is on its way.)
  if (socket.connecting || socket.writableEnded !== socket.writableFinished) socket.destroy();
  else socket.resetAndDestroy();
}

const HIGH_WATER = 16;

/** Moves chunks one way, in order, through the toxics that act on that way. */
class Pump {
  readonly #queue: { chunk: Buffer; at: number }[] = [];
  #busy = false;
  #ended = false;
  #wake: (() => void) | undefined;
  /** Bytes through since each `limit` toxic appeared (one re-added under its name starts over). */
  readonly #limits = new WeakMap<ActiveToxic, number>();
  forwarded = 0;
  finished = false;

  constructor(
    readonly link: Link,
    readonly way: 'upstream' | 'downstream',
    readonly from: Socket,
    readonly to: Socket,
  ) {
    from.on('data', (chunk: Buffer) => this.#push(chunk));
    from.once('end', () => {
      this.#ended = true;
      if (!this.#busy) void this.#pump();
    });
  }

  wake(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #push(chunk: Buffer): void {
    this.#queue.push({ chunk, at: performance.now() });
    if (this.#queue.length >= HIGH_WATER) this.from.pause();
    if (!this.#busy) void this.#pump();
  }

  async #pump(): Promise<void> {
    this.#busy = true;
    const signal = this.link.signal;
    try {
      for (let item = this.#queue.shift(); item !== undefined; item = this.#queue.shift()) {
        if (this.#queue.length < HIGH_WATER / 2 && this.from.isPaused()) this.from.resume();
        await this.#deliver(item.chunk, item.at);
        if (signal.aborted) return;
      }
      if (this.from.isPaused()) this.from.resume();
      // The FIN waits behind a blackhole as the bytes before it did, queued or not: a frozen peer
      // does not close either.
      if (this.#ended) await this.#hold();
    } catch {
      // Aborted by a closed connection: nothing more to forward.
      return;
    } finally {
      this.#busy = false;
    }
    if (this.#ended) this.#end();
  }

  #end(): void {
    if (this.finished) return;
    this.finished = true;
    if (!this.to.destroyed) this.to.end();
    this.link.halfClosed();
  }

  async #deliver(input: Buffer, arrived: number): Promise<void> {
    const proxy = this.link.proxy;
    let chunk = input;
    /** A limit toxic's last bytes are in this chunk. */
    let last = false;
    await this.#hold();
    for (const toxic of proxy.toxicsFor(this.link.id, this.way)) {
      switch (toxic.type) {
        case 'drop': {
          const unit = toxic.bytes === undefined ? 1 : chunk.length;
          const taken = proxy.takeDrop(toxic, unit);
          if (taken === 0) break;
          chunk = toxic.bytes === undefined ? chunk.subarray(chunk.length) : chunk.subarray(taken);
          if (chunk.length === 0) return;
          break;
        }
        case 'latency': {
          const jitter = toxic.jitter === 0 ? 0 : (proxy.random() * 2 - 1) * toxic.jitter;
          const due = arrived + Math.max(0, toxic.latency + jitter);
          // Taken off meanwhile, it holds this chunk no longer.
          while (performance.now() < due && proxy.has(toxic)) await this.#nap(due - performance.now());
          break;
        }
        case 'reset': {
          // Both ways: acted on at open (Link.toxicAdded). One way, as Toxiproxy's reset_peer: this
          // chunk is held, and the link reset `after` ms on; taken off before, the chunk goes on.
          if (toxic.direction === 'both') break;
          const due = performance.now() + toxic.after;
          while (performance.now() < due && proxy.has(toxic)) await this.#nap(due - performance.now());
          if (!proxy.has(toxic)) break;
          this.link.reset();
          return;
        }
        case 'limit': {
          const through = this.#limits.get(toxic) ?? 0;
          const room = Math.max(0, toxic.bytes - through);
          if (room === 0) {
            this.link.destroy();
            return;
          }
          if (room < chunk.length) chunk = chunk.subarray(0, room);
          this.#limits.set(toxic, through + chunk.length);
          // Its last byte: the connection closes once the chunk is through, not at the next one.
          if (room === chunk.length) last = true;
          break;
        }
        default:
          break;
      }
    }
    await this.#write(chunk);
    // Closed even if the limit came off while the chunk was shaped: the bytes past it are gone.
    if (last) this.link.destroy();
  }

  async #write(chunk: Buffer): Promise<void> {
    for (let at = 0; at < chunk.length; ) {
      if (this.link.signal.aborted || this.to.destroyed) return;
      // A blackhole (a freeze) put on part way through a chunk, or while it waited out a latency,
      // holds the rest of it: a frozen peer sends nothing more, however the bytes were shaped.
      // Read per piece: a slicer or bandwidth toxic taken off stops shaping the rest of the chunk.
      let shape = this.#shape();
      if (shape.held) {
        await this.#hold();
        if (this.to.destroyed) return;
        shape = this.#shape();
      }
      // Bandwidth: pieces of a tenth of a second's worth, each followed by its share of the second.
      const size = shape.rate > 0 ? Math.max(1, Math.min(shape.size, Math.ceil(shape.rate / 10))) : shape.size;
      const piece = chunk.subarray(at, at + size);
      at += piece.length;
      this.forwarded += piece.length;
      const written = performance.now();
      if (!this.to.write(piece)) await once(this.to, 'drain', { signal: this.link.signal });
      for (;;) {
        const now = this.#shape();
        const due = Math.max(at < chunk.length ? now.delay : 0, now.rate > 0 ? (piece.length * 1000) / now.rate : 0);
        const wait = written + due - performance.now();
        if (wait <= 0) break;
        await this.#nap(wait);
      }
    }
  }

  /** Waits while a blackhole acts on this way (a toxic taken off wakes the pump). */
  async #hold(): Promise<void> {
    while (this.link.proxy.toxicsFor(this.link.id, this.way).some((t) => t.type === 'blackhole')) await this.#nap();
  }

  /** What the slicer and bandwidth toxics on this way ask for now, and whether a blackhole holds it. */
  #shape(): { size: number; delay: number; rate: number; held: boolean } {
    let size = Number.POSITIVE_INFINITY;
    let delay = 0;
    let rate = 0;
    let held = false;
    for (const toxic of this.link.proxy.toxicsFor(this.link.id, this.way)) {
      if (toxic.type === 'blackhole') held = true;
      else if (toxic.type === 'slicer') {
        size = Math.min(size, toxic.size);
        delay = Math.max(delay, toxic.delay);
      } else if (toxic.type === 'bandwidth') rate = rate === 0 ? toxic.rate : Math.min(rate, toxic.rate);
    }
    return { size, delay, rate, held };
  }

  /**
   * Waits `ms` (or until woken, without `ms`); a toxic taken off wakes it early. Rejects once the
   * link is done, so the pump stops.
   */
  async #nap(ms?: number): Promise<void> {
    const signal = this.link.signal;
    if (!signal.aborted) {
      await new Promise<void>((resolve) => {
        const timer = ms === undefined ? undefined : setTimeout(() => this.wake(), ms);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    signal.throwIfAborted();
  }
}
