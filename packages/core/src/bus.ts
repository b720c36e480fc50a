import { type Channel, channel } from 'node:diagnostics_channel';
import { z } from 'zod';
import { type EventOf, type EventType, eventTypes, type HoldfastEvent } from './events.js';
import { fnOption, parseOptions } from './options.js';
import { hideSecrets } from './redact.js';
import { warnOnce } from './warn.js';

const MAJOR = 0;
const VERSION = '0.1.0';

/**
 * The event types every loaded copy of this major knows: a newer copy's packages subscribe to
 * their own types on the bus an older copy made, and that is no typo.
 */
const knownTypes = ((): ReadonlySet<string> => {
  const g = globalThis as Record<symbol, unknown>;
  const key = Symbol.for(`@holdfast/core/event-types@${MAJOR}`);
  if (!(g[key] instanceof Set)) g[key] = new Set<string>();
  const known = g[key] as Set<string>;
  for (const type of eventTypes) known.add(type);
  return known;
})();

/** A listener for one event type; it receives that type's event. */
export type Listener<K extends EventType> = (event: EventOf<K>) => void;
/** A listener for every event (`bus.on('*', listener)`). */
export type AnyListener = (event: HoldfastEvent) => void;
/** Removes the listener it was returned for. Calling it twice is harmless. */
export type Unsubscribe = () => void;

/**
 * One typed stream of everything holdfast does. Emitters call `wants(type)` first and build
 * the event only when it returns true, so an emit nobody listens to costs a property read.
 */
export interface Bus {
  /** Calls `listener` with every event of `type`; returns the function that stops it. */
  on<K extends EventType>(type: K, listener: Listener<K>): Unsubscribe;
  /** Calls `listener` with every event, whatever its type. */
  on(type: '*', listener: AnyListener): Unsubscribe;
  /** Like `on`, for the next event of `type` only. */
  once<K extends EventType>(type: K, listener: Listener<K>): Unsubscribe;
  /** Like `on`, for the next event of any type only. */
  once(type: '*', listener: AnyListener): Unsubscribe;
  /** True when a listener, a `*` listener, or a diagnostics_channel subscriber wants `type`. */
  wants(type: EventType): boolean;
  /**
   * Hands `event` to its listeners and its diagnostics_channel; a listener that throws (or an
   * async one that rejects) never reaches the emitter. An event emitted by a listener is queued and dispatched once every
   * listener has seen the event being dispatched, so all listeners see events in emit order.
   */
  emit(event: HoldfastEvent): void;
}

/** Options of {@link createBus}. */
export interface BusOptions {
  /**
   * Called when a listener throws, or when the promise an async listener returned rejects. The
   * emit carries on with the next listener either way.
   * @default a process warning (code HOLDFAST_LISTENER_ERROR), once per listener
   */
  readonly onListenerError?: (error: unknown, event: HoldfastEvent) => void;
}

// A listener error goes to `onListenerError`: checked here, not when a listener first throws.
const busOptionsSchema = z
  .strictObject({ onListenerError: fnOption<(error: unknown, event: HoldfastEvent) => void>().optional() })
  .optional();

/** Prefix of the node:diagnostics_channel channel each event type is also published on. */
export const channelPrefix = 'holdfast:';

/** One subscription; `live` turns false when it is removed, even in the middle of an emit. */
interface Subscription {
  readonly listener: AnyListener;
  live: boolean;
}

type Slot = readonly Subscription[];

/** Events emitted by listeners while one is dispatched wait here; past this many, they are dropped. */
const MAX_QUEUED = 10_000;
/** Stands for the listeners whose events overflowed the queue, so that is reported once. */
const overflowing: AnyListener = () => {};

/** One event type on one bus: its listeners and its diagnostics_channel, found by one lookup. */
interface Topic {
  // Arrays are replaced, never mutated, so an emit iterates a stable list without copying.
  listeners: Slot | undefined;
  readonly channel: Channel;
}

/** Marks a bus of ours (of any installed copy): its emit and wants never throw. */
const kSafe = Symbol.for('holdfast.bus.safe');

class EventBus implements Bus {
  readonly [kSafe] = true;
  // A Map, not an object keyed by type: `wants()` runs on every call of every policy, and a
  // Map lookup stays fast where an object that had keys deleted turns into a slow dictionary.
  readonly #topics = new Map<EventType, Topic>();
  #any: Slot = [];
  /** Events emitted by listeners during a dispatch, in emit order (reused, so an emit allocates nothing). */
  readonly #queue: HoldfastEvent[] = [];
  #dispatching = false;
  /** The queue overflowed in this dispatch: said once. */
  #overflowed = false;
  readonly #onListenerError: (error: unknown, event: HoldfastEvent, listener: AnyListener) => void;
  /** The unknown types `on()` warned of: once each, and 10 at most (types made per tenant). */
  readonly #unknownTold = new Set<string>();

  constructor(options: BusOptions = {}) {
    const custom = options.onListenerError;
    const told = new WeakSet<AnyListener>();
    this.#onListenerError = custom
      ? (error, event) => custom(error, event)
      : (error, event, listener) =>
          warnOnce(
            told,
            listener,
            'HOLDFAST_LISTENER_ERROR',
            `a listener for "${event.type}" threw (reported once per listener)`,
            error,
          );
  }

  on(type: EventType | '*', listener: AnyListener): Unsubscribe {
    return this.#subscribe('on', type, listener, listener);
  }

  once(type: EventType | '*', listener: AnyListener): Unsubscribe {
    // `listener` is checked, not the wrapper (a function whatever it is): a bad one threw only
    // when the event came, as a listener error.
    const off = this.#subscribe('once', type, listener, (event) => {
      off();
      // Returned: an async listener's rejection is caught as any listener's is (#call).
      return listener(event);
    });
    return off;
  }

  /** Checks `type` and `listener` as given to bus[`method`]() and subscribes `run` to `type`. */
  #subscribe(method: string, type: EventType | '*', listener: AnyListener, run: AnyListener): Unsubscribe {
    if (typeof type !== 'string') {
      // What it is, never what it holds: a listener passed first would print its source.
      const got = type == null ? String(type) : `a${typeof type === 'object' ? 'n' : ''} ${typeof type}`;
      throw new TypeError(`bus.${method}(): type must be an event type string (got ${got})`);
    }
    if (typeof listener !== 'function') throw new TypeError(`bus.${method}("${type}"): listener must be a function`);
    // A typo from JavaScript (`breaker.opened`) listened for ever and heard nothing. Still
    // subscribed: a newer package than this core may emit it on the shared bus.
    if (type !== '*' && !knownTypes.has(type) && !this.#unknownTold.has(type) && this.#unknownTold.size < 10) {
      this.#unknownTold.add(type);
      // Quoted (a line break is escaped, not a forged log line) and cut short.
      const shown = JSON.stringify(type.length > 64 ? `${type.slice(0, 64)}…` : type);
      process.emitWarning(
        hideSecrets(
          `bus.${method}(${shown}): @holdfast/core ${VERSION} knows no such event type (a typo, or a newer package's: update it)`,
        ),
        { type: 'HoldfastWarning', code: 'HOLDFAST_UNKNOWN_EVENT' },
      );
    }
    const subscription: Subscription = { listener: run, live: true };
    this.#add(type, subscription);
    return () => {
      if (!subscription.live) return;
      subscription.live = false;
      this.#remove(type, subscription);
    };
  }

  wants(type: EventType): boolean {
    const topic = this.#topic(type);
    return topic.listeners !== undefined || this.#any.length > 0 || topic.channel.hasSubscribers;
  }

  emit(event: HoldfastEvent): void {
    const topic = this.#topic(event.type);
    if (topic.listeners === undefined && this.#any.length === 0 && !topic.channel.hasSubscribers) return;
    const queue = this.#queue;
    if (this.#dispatching) {
      // A listener emits: its event waits until every listener has seen the current one, so
      // nobody sees an effect before its cause (breadth-first, unlike EventEmitter).
      if (queue.length < MAX_QUEUED) queue.push(event);
      else if (!this.#overflowed) {
        this.#overflowed = true;
        this.#report(new Error(`bus: over ${MAX_QUEUED} events emitted by listeners in one emit, dropped`), event);
      }
      return;
    }
    // No try/finally: listeners and the error reporter are each caught, and publish() never throws.
    this.#dispatching = true;
    this.#dispatch(topic, event);
    if (queue.length > 0) this.#drain(queue);
    this.#dispatching = false;
  }

  #drain(queue: HoldfastEvent[]): void {
    for (let i = 0; i < queue.length; i++) {
      const next = queue[i] as HoldfastEvent;
      this.#dispatch(this.#topic(next.type), next);
    }
    queue.length = 0;
    this.#overflowed = false;
  }

  #dispatch(topic: Topic, event: HoldfastEvent): void {
    const typed = topic.listeners;
    if (typed !== undefined) this.#call(typed, event);
    if (this.#any.length > 0) this.#call(this.#any, event);
    if (topic.channel.hasSubscribers) topic.channel.publish(event);
  }

  #call(subscriptions: Slot, event: HoldfastEvent): void {
    for (const subscription of subscriptions) {
      // Removed by an earlier listener of this same event: it is gone, as off() promised.
      if (!subscription.live) continue;
      try {
        // An async listener's promise: a rejection is reported as a throw is, never left
        // unhandled (it would end the process). Only a native Promise: any other thenable is left
        // alone, its `then` never read nor called (a lazy one, a query builder returned by
        // mistake, would be run by it).
        const result: unknown = subscription.listener(event);
        if (result instanceof Promise) {
          result.then(undefined, (error: unknown) => this.#report(error, event, subscription.listener));
        }
      } catch (error) {
        this.#report(error, event, subscription.listener);
      }
    }
  }

  #report(error: unknown, event: HoldfastEvent, listener: AnyListener = overflowing): void {
    try {
      this.#onListenerError(error, event, listener);
    } catch {
      // The error reporter itself threw: nothing left to tell, and the call must go on.
    }
  }

  #topic(type: EventType): Topic {
    let topic = this.#topics.get(type);
    if (topic === undefined) {
      topic = { listeners: undefined, channel: channel(channelPrefix + type) };
      this.#topics.set(type, topic);
    }
    return topic;
  }

  #add(type: EventType | '*', subscription: Subscription): void {
    if (type === '*') this.#any = [...this.#any, subscription];
    else {
      const topic = this.#topic(type);
      topic.listeners = [...(topic.listeners ?? []), subscription];
    }
  }

  #remove(type: EventType | '*', subscription: Subscription): void {
    const current = type === '*' ? this.#any : this.#topic(type).listeners;
    if (current === undefined) return;
    const at = current.indexOf(subscription);
    if (at === -1) return;
    const next = current.filter((_, i) => i !== at);
    if (type === '*') this.#any = next;
    else this.#topic(type).listeners = next.length === 0 ? undefined : next;
  }
}

/**
 * Runs every step of a teardown, whatever one throws, then throws the first error thrown, if any:
 * one failing step (a user's registry or meter that throws) leaves none of the others undone.
 */
export function runAll(steps: Iterable<() => void>): void {
  let failed = false;
  let first: unknown;
  for (const step of steps) {
    try {
      step();
    } catch (error) {
      if (!failed) first = error;
      failed = true;
    }
  }
  if (failed) throw first;
}

/** User buses whose throw was told already: once per bus, however many policies share it. */
const toldBuses = new WeakSet<Bus>();

/**
 * A bus of the user's own (an adapter to their logger) whose `emit` or `wants` may throw: a
 * policy given one uses this wrapper, so that a throw breaks no call (it turned successes into
 * the bus's error and left breakers uncounted) and is told once per bus as a process warning
 * (`HOLDFAST_BUS_ERROR`). A bus of ours is returned as is: it never throws.
 */
export function shieldBus(bus: Bus, owner: string): Bus {
  try {
    if ((bus as { [kSafe]?: unknown })[kSafe] === true) return bus;
  } catch {
    // A Proxy that throws on reads: shielded like any other.
  }
  const failed = (error: unknown): void =>
    warnOnce(
      toldBuses,
      bus,
      'HOLDFAST_BUS_ERROR',
      `${owner}: the bus threw (reported once per bus); the call went on`,
      error,
    );
  // An unsubscribe that is none (an EventEmitter adapter returns `this`) or throws: told, not
  // thrown from a dispose() half done.
  const unsubscribe =
    (off: Unsubscribe): Unsubscribe =>
    () => {
      try {
        off();
      } catch (error) {
        failed(error);
      }
    };
  // Shielded already: a shield passed to shieldBus() again is returned as it is, not wrapped twice.
  const shield: Bus & { readonly [kSafe]: true } = {
    [kSafe]: true,
    on: ((type: '*', listener: AnyListener) => unsubscribe(bus.on(type, listener))) as Bus['on'],
    once: ((type: '*', listener: AnyListener) => unsubscribe(bus.once(type, listener))) as Bus['once'],
    wants(type) {
      try {
        return Boolean(bus.wants(type));
      } catch (error) {
        failed(error);
        return false;
      }
    },
    emit(event) {
      try {
        bus.emit(event);
      } catch (error) {
        failed(error);
      }
    },
  };
  return shield;
}

/** Makes a bus of its own, e.g. one per test or per tenant. */
export function createBus(options?: BusOptions): Bus {
  return new EventBus(parseOptions('createBus', busOptionsSchema, options));
}

const busKey = Symbol.for(`@holdfast/core/bus@${MAJOR}`);
const registryKey = Symbol.for('@holdfast/core/bus-versions');

type GlobalSlot = { readonly bus: Bus; readonly version: string };

function isBus(value: unknown): value is Bus {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Bus).on === 'function' &&
    typeof (value as Bus).once === 'function' &&
    typeof (value as Bus).wants === 'function' &&
    typeof (value as Bus).emit === 'function'
  );
}

/**
 * The process-wide bus. Every copy of @holdfast/core of the same major version finds the same
 * one under a `Symbol.for` key; copies of different majors get separate buses and a warning.
 */
function globalBus(): Bus {
  const g = globalThis as Record<symbol, unknown>;
  if (!(g[registryKey] instanceof Map)) g[registryKey] = new Map<number, string>();
  const versions = g[registryKey] as Map<number, string>;
  const others = [...versions].filter(([major]) => major !== MAJOR);
  if (others.length > 0 && !versions.has(MAJOR)) {
    process.emitWarning(
      `@holdfast/core ${VERSION} is loaded beside ${others.map(([, v]) => v).join(', ')}: ` +
        'different major versions cannot share one bus, so listeners on one will not see events of the other. ' +
        'Install one major version of @holdfast/* packages.',
      { type: 'HoldfastWarning', code: 'HOLDFAST_BUS_SPLIT' },
    );
  }
  versions.set(MAJOR, versions.get(MAJOR) ?? VERSION);
  const existing = g[busKey] as GlobalSlot | undefined;
  if (existing !== undefined) {
    if (isBus(existing.bus)) return existing.bus;
    process.emitWarning(
      `the global holdfast bus slot holds something that is not a bus (version ${String(existing.version)}): ` +
        `@holdfast/core ${VERSION} uses a bus of its own, and listeners on the other will not see its events.`,
      { type: 'HoldfastWarning', code: 'HOLDFAST_BUS_SPLIT' },
    );
    return createBus();
  }
  const slot: GlobalSlot = { bus: createBus(), version: VERSION };
  Object.defineProperty(g, busKey, { value: slot, enumerable: false, configurable: false, writable: false });
  return slot.bus;
}

/** The default bus every policy emits on unless given `{ bus }`. */
export const bus: Bus = globalBus();
