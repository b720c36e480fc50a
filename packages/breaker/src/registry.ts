import {
  type Bus,
  busOption,
  type Clock,
  clockOption,
  DisposedError,
  type ExecuteOptions,
  elapsedTime,
  fnOption,
  HoldfastConfigError,
  nameOption,
  type Operation,
  type PolicyRegistry,
  parseOptions,
  positiveDurationOption,
  realClock,
  type Snapshottable,
} from '@holdfast/core';
import { z } from 'zod';
import { CircuitBreakerPolicy } from './breaker.js';
import {
  type BreakerConfig,
  type BreakerSettings,
  type BreakerSnapshot,
  breakerSettingsSchema,
  breakerSnapshotSchema,
  noRateWithConsecutive,
} from './options.js';
import { shownKey as shown } from './shown.js';

/**
 * Settings shared by a registry's breakers, and those a key's overrides may set: a breaker's
 * options less its name, restore, bus, clock and listing, which the registry gives each breaker
 * (an override naming one is refused, not silently overwritten or applied).
 */
const sharedSettingsSchema = breakerSettingsSchema
  .omit({ bus: true, clock: true, policies: true })
  .superRefine(noRateWithConsecutive);

/** Settings for one key, laid over the shared ones. */
export type KeySettings = Omit<BreakerSettings, 'bus' | 'clock' | 'policies'>;

/** Plain JSON a registry reports, and takes back through the `restore` option. */
export const registrySnapshotSchema = z.object({
  /** The registry's name. */
  name: z.string(),
  /** When the snapshot was taken (epoch ms). */
  time: z.number(),
  /** Breakers held when it was taken. */
  size: z.number().int().nonnegative(),
  /** Each breaker's snapshot, by key (a key that is a URL shown without its credentials and secret parameters). */
  breakers: z.record(z.string(), breakerSnapshotSchema),
});

/** What a registry's `snapshot()` returns. */
export type RegistrySnapshot = z.output<typeof registrySnapshotSchema>;

/** Validates the options of {@link breakerRegistry}; {@link BreakerRegistryOptions} is inferred from it. */
export const registryOptionsSchema = z.strictObject({
  /** Breakers are named `<name>:<key>` on their events. @default 'breakers' */
  name: nameOption.default('breakers'),
  /** Options every breaker starts from. @default the defaults of circuitBreaker() */
  defaults: sharedSettingsSchema.optional(),
  /**
   * Options for some keys, laid over `defaults` (objects such as `halfOpen` merge field by
   * field): a record by key, or a function of the key that returns them or undefined.
   */
  overrides: z
    .union([z.record(z.string(), z.unknown()), fnOption<(key: string) => KeySettings | undefined>()])
    .optional(),
  /** At most this many breakers are kept; past it the least recently used goes. @default 10_000 */
  maxKeys: z.number().int().positive().default(10_000),
  /**
   * A breaker unused this long (ms) is dropped, unless it is open, isolated or disabled.
   * A dropped key gets a fresh breaker on its next call. @default 600_000 (10 minutes)
   */
  idleTtl: positiveDurationOption.default(600_000),
  /** A registry snapshot to start from: each key's breaker is restored when first used. */
  restore: registrySnapshotSchema.optional(),
  bus: busOption.optional(),
  clock: clockOption.optional(),
  /** Where each breaker lists itself, as `<name>:<key>`, while it is held. @default core's `policies` */
  policies: breakerSettingsSchema.shape.policies,
});

/** Options of `breakerRegistry()`. */
export type BreakerRegistryOptions = Omit<z.input<typeof registryOptionsSchema>, 'overrides'> & {
  readonly overrides?: Readonly<Record<string, KeySettings>> | ((key: string) => KeySettings | undefined);
};

interface Entry {
  readonly breaker: CircuitBreakerPolicy;
  /** The key as shown: unique among the keys held (a second key that shows alike gets ` #2`). */
  readonly shown: string;
  /** When get() last handed it out; its own `usedAt` says when it was last called. */
  lastUsed: number;
  /** When the entry last moved to the back of the LRU order. */
  movedAt: number;
}

/**
 * One breaker per key (a host, a tenant), made on first use. The map keeps least recently
 * used first, so eviction by `maxKeys` and by `idleTtl` reads only its front; nothing runs
 * in the background.
 */
export class BreakerRegistry implements Snapshottable<RegistrySnapshot> {
  /** The registry's name; its breakers are named `<name>:<key>`. */
  readonly name: string;
  readonly #entries = new Map<string, Entry>();
  /** Shown forms taken by the keys held: two DSNs that differ only in their password show apart. */
  readonly #shown = new Set<string>();
  readonly #defaults: Record<string, unknown>;
  readonly #shared: BreakerConfig;
  readonly #overrides: ((key: string) => KeySettings | undefined) | undefined;
  readonly #maxKeys: number;
  readonly #idleTtl: number;
  readonly #bus: Bus | undefined;
  readonly #clock: Clock;
  /** The clock's monotonic time, for idle times: a wall-clock step neither evicts nor keeps every breaker. */
  readonly #elapsed: () => number;
  readonly #policies: PolicyRegistry | false | undefined;
  readonly #restore: Map<string, BreakerSnapshot>;
  /** How stale an entry's place in the LRU order may get: re-inserting on every call would cost more. */
  readonly #moveEvery: number;
  #nextSweep = 0;
  /** Suffixes handed out past #9 (see #create). */
  #made = 9;
  #disposed = false;

  constructor(options: BreakerRegistryOptions = {}) {
    const parsed = parseOptions('breakerRegistry', registryOptionsSchema, options);
    this.name = parsed.name;
    this.#maxKeys = parsed.maxKeys;
    this.#idleTtl = parsed.idleTtl;
    this.#bus = parsed.bus;
    this.#clock = parsed.clock ?? realClock;
    this.#elapsed = elapsedTime(this.#clock);
    this.#policies = parsed.policies;
    this.#moveEvery = Math.min(1_000, parsed.idleTtl / 4);
    this.#defaults = { ...(options.defaults ?? {}) };
    this.#shared = this.#config('defaults', {});
    const overrides = options.overrides;
    if (typeof overrides === 'function') this.#overrides = overrides;
    else if (overrides !== undefined) {
      const byKey = new Map(Object.entries(overrides));
      // A bad override is reported now, not on the key's first call.
      for (const [key, settings] of byKey)
        if (settings !== undefined) this.#config(`overrides.${shown(key)}`, settings);
      this.#overrides = (key) => byKey.get(key);
    }
    // By key as shown: a snapshot never holds a URL's password, so a key is found by its shown
    // form (a snapshot taken before keys were shown so is read the same way).
    this.#restore = new Map();
    for (const [key, saved] of Object.entries(parsed.restore?.breakers ?? {})) this.#restore.set(shown(key), saved);
    // zod's record drops an own `__proto__` key (assigning it would set a prototype): a
    // tenant of that name would restart closed. Read it back, validated like the others.
    const saved = options.restore?.breakers;
    if (saved !== undefined && Object.hasOwn(saved, '__proto__')) {
      const proto = parseOptions(
        'breakerRegistry',
        registrySnapshotSchema.shape.breakers.valueType,
        Object.getOwnPropertyDescriptor(saved, '__proto__')?.value,
      );
      this.#restore.set('__proto__', proto);
    }
  }

  /** Breakers held now. */
  get size(): number {
    return this.#entries.size;
  }

  /** True when a breaker for `key` is held now (made and not yet evicted). */
  has(key: string): boolean {
    return this.#entries.has(key);
  }

  /** The breaker for `key`, made with the shared defaults and the key's overrides if it has none yet. */
  get(key: string): CircuitBreakerPolicy {
    if (this.#disposed) throw new DisposedError(this.name);
    if (typeof key !== 'string') throw this.#notAKey(key);
    const now = this.#elapsed();
    if (now >= this.#nextSweep) this.#sweep(now);
    const entry = this.#entries.get(key);
    if (entry === undefined) return this.#create(key, now);
    entry.lastUsed = now;
    if (now - entry.movedAt >= this.#moveEvery) {
      entry.movedAt = now;
      this.#entries.delete(key);
      this.#entries.set(key, entry);
    }
    return entry.breaker;
  }

  /** Runs `fn` through the breaker of `key`. */
  execute<T>(key: string, fn: Operation<T>, options?: ExecuteOptions): Promise<T> {
    try {
      return this.get(key).execute(fn, options);
    } catch (error) {
      // What get() throws (disposed, a key not a string, the key's overrides throwing or giving
      // bad settings on its first use) is a refusal like any other: a rejection, seen by `.catch()`.
      return Promise.reject(error);
    }
  }

  /** A key of the wrong type (a tenant id as a number, `execute(fn)`): said by its type, never its content. */
  #notAKey(key: unknown): TypeError {
    let kind = key == null ? String(key) : `a ${typeof key}`;
    if (typeof key === 'object' && key !== null) {
      kind = 'an object';
      try {
        // A class's name, if it is one (a name set at run time may be anything, a URL too).
        const name: unknown = key.constructor?.name;
        if (typeof name === 'string' && name !== 'Object' && /^[A-Za-z_$][\w$]*$/.test(name))
          kind = `an instance of ${name}`;
      } catch {
        // A Proxy whose getters throw: an object, and the call still rejects.
      }
    }
    return new TypeError(`${this.name}: key must be a string (got ${kind})`);
  }

  /** Drops the breaker of `key`; its next call gets a fresh one. */
  delete(key: string): boolean {
    const entry = this.#entries.get(key);
    if (entry === undefined) return false;
    this.#drop(key, entry);
    return true;
  }

  /** Drops breakers idle for `idleTtl`. Runs by itself on use; call it to trim at a time of your choosing. */
  prune(): void {
    this.#sweep(this.#elapsed());
  }

  snapshot(): RegistrySnapshot {
    if (!this.#disposed) this.#sweep(this.#elapsed());
    const breakers: [string, BreakerSnapshot][] = [];
    for (const entry of this.#entries.values()) breakers.push([entry.shown, entry.breaker.snapshot()]);
    return {
      name: this.name,
      time: this.#clock.now(),
      size: this.#entries.size,
      breakers: Object.fromEntries(breakers),
    };
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const entry of this.#entries.values()) entry.breaker.dispose();
    this.#entries.clear();
    this.#shown.clear();
    this.#restore.clear();
  }

  #create(key: string, now: number): CircuitBreakerPolicy {
    // Its settings first: a key whose overrides throw or give bad ones is refused, and made room
    // for first, it cost a held (even an open) breaker its place for nothing.
    const override = this.#overrides?.(key);
    // Named, reported and restored by the key as shown: a key may be a URL with a password.
    let seen = shown(key);
    const base = override === undefined ? this.#shared : this.#config(`overrides("${seen}")`, override);
    while (this.#entries.size >= this.#maxKeys) this.#evictOldest(now);
    // #2 to #9, then a number not yet used: keys chosen to show alike cost no more than others.
    for (let n = 2, base = seen; this.#shown.has(seen); n++) seen = `${base} #${n < 10 ? n : ++this.#made}`;
    const restore = this.#restore.get(seen);
    if (restore !== undefined) this.#restore.delete(seen);
    const breaker = new CircuitBreakerPolicy(base, `${this.name}:${seen}`, restore);
    CircuitBreakerPolicy.trackUse(breaker);
    this.#entries.set(key, { breaker, shown: seen, lastUsed: now, movedAt: now });
    this.#shown.add(seen);
    return breaker;
  }

  #drop(key: string, entry: Entry): void {
    this.#entries.delete(key);
    this.#shown.delete(entry.shown);
    entry.breaker.dispose();
  }

  /**
   * Parses the defaults with `settings` laid over them; a bad value names where it came from. A
   * key sets what the defaults may (not its name, restore, bus, clock or listing): the rest is the registry's.
   */
  #config(where: string, settings: unknown): BreakerConfig {
    // Settings are a plain object: null, a number, a class instance or a Promise (an async
    // overrides function) is refused naming the key, not read as no settings or thrown raw.
    if (!isPlainObject(settings)) {
      const message =
        typeof (settings as { then?: unknown } | null)?.then === 'function'
          ? 'must return settings, not a Promise'
          : 'must be settings or undefined';
      throw new HoldfastConfigError('breakerRegistry', [{ path: where, message, value: settings }]);
    }
    try {
      const parsed = parseOptions('breakerRegistry', sharedSettingsSchema, mergeSettings(this.#defaults, settings));
      const config: BreakerConfig = {
        ...parsed,
        name: this.name,
        bus: this.#bus,
        clock: this.#clock,
        policies: this.#policies,
      };
      return config;
    } catch (error) {
      if (!(error instanceof HoldfastConfigError)) throw error;
      throw new HoldfastConfigError(
        'breakerRegistry',
        error.issues.map((issue) => ({ ...issue, path: issue.path ? `${where}.${issue.path}` : where })),
      );
    }
  }

  /**
   * When the entry's breaker was last used: handed out by get(), or called (through a reference
   * held, a pipeline built once over `get(key)`, as much as through execute()).
   */
  #lastUse(entry: Entry): number {
    const called = CircuitBreakerPolicy.usedAt(entry.breaker);
    return Math.max(called, entry.lastUsed);
  }

  /** To the back of the LRU order, as if moved at `now`: the map stays in order of `movedAt`. */
  #toBack(key: string, entry: Entry, now: number): void {
    this.#entries.delete(key);
    entry.movedAt = now;
    this.#entries.set(key, entry);
  }

  #sweep(now: number): void {
    this.#nextSweep = now + this.#moveEvery;
    for (const [key, entry] of this.#entries) {
      // The map is in order of `movedAt`: past this entry, everything was used within the TTL.
      if (now - entry.movedAt < this.#idleTtl) break;
      const used = this.#lastUse(entry);
      if (now - used < this.#idleTtl) {
        // Called lately through a reference held: to the back, out of the way of later sweeps
        // (moved at `now`, so checked again no later than a sweep after its idleTtl runs out).
        if (now - used < this.#moveEvery) this.#toBack(key, entry, now);
        continue;
      }
      if (CircuitBreakerPolicy.holdsState(entry.breaker, true)) continue;
      this.#drop(key, entry);
    }
  }

  /**
   * Drops the least recently used breaker that holds no state. An open (due or not), half-open,
   * isolated or disabled one is passed over and moved to the back, up to {@link SPARE_AT_MOST} of them:
   * dropping it would give its key a fresh closed breaker, so anyone who can send calls with
   * keys of their choosing (a Host header, a tenant id) could close any breaker by cycling keys.
   * Memory stays bounded: past that many, the oldest goes whatever its state.
   */
  #evictOldest(now: number): void {
    const entries = this.#entries;
    let spared = 0;
    // Ends: each pass moves every entry it looked at and did not drop to the back at `now`, after
    // any use it had, and none is called while this runs: the next pass looks at others, or at
    // these as unused since their move, and a stateful one is passed over 8 times at most in all.
    for (;;) {
      // The front run of entries used since they took their place (called through a reference
      // held, or handed out by get() since their last move), and the first one not: past it, the
      // map is in order of `movedAt`, so the least recently used is among these, by real use.
      const seen: Seen[] = [];
      for (const [key, entry] of entries) {
        const used = this.#lastUse(entry);
        seen.push({ key, entry, used });
        if (used <= entry.movedAt) break;
      }
      if (seen.length === 0) return;
      seen.sort(byUse);
      let dropped = -1;
      for (let i = 0; i < seen.length; i++) {
        const { key, entry } = seen[i] as Seen;
        if (spared === SPARE_AT_MOST || !CircuitBreakerPolicy.holdsState(entry.breaker, false)) {
          this.#drop(key, entry);
          dropped = i;
          break;
        }
        spared++;
      }
      // The rest to the back in order of their last use, as moved now: the next eviction reads
      // them least recently used first.
      for (let i = 0; i < seen.length; i++) {
        if (i === dropped) continue;
        const { key, entry } = seen[i] as Seen;
        this.#toBack(key, entry, now);
      }
      if (dropped >= 0) return;
    }
  }
}

/** An entry one eviction looked at, with its last use. */
interface Seen {
  readonly key: string;
  readonly entry: Entry;
  readonly used: number;
}

const byUse = (a: Seen, b: Seen): number => a.used - b.used;

/** Stateful breakers one eviction passes over before it drops the oldest whatever its state. */
const SPARE_AT_MOST = 8;

/**
 * Makes a registry of breakers, one per key.
 *
 * @example
 * const hosts = breakerRegistry({ defaults: { openFor: 10_000 }, maxKeys: 1_000 });
 * await hosts.execute(new URL(url).host, ({ signal }) => fetch(url, { signal }));
 */
export function breakerRegistry(options: BreakerRegistryOptions = {}): BreakerRegistry {
  return new BreakerRegistry(options);
}

/** `over` laid on `base`; plain-object options (window, halfOpen, slowCall) merge one level down. */
function mergeSettings(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  // Object.assign, not spreads: V8 (Node 20) is slow to add properties to a spread copy.
  const merged: Record<string, unknown> = Object.assign({}, base);
  for (const [key, value] of Object.entries(over)) {
    const under = merged[key];
    merged[key] = isPlainObject(under) && isPlainObject(value) ? Object.assign({}, under, value) : value;
  }
  return merged;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
