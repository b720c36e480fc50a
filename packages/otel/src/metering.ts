import {
  type EventOf,
  type EventType,
  HoldfastConfigError,
  type HoldfastEvent,
  type PolicyRegistry,
  runAll,
} from '@holdfast/core';
import { createNoopMeter, type Meter, type MeterProvider, metrics } from '@opentelemetry/api';
import { meterChaos } from './chaos.js';
import { meterLimits } from './limits.js';
import { type Handlers, meterEvents, type Part } from './metrics.js';

/**
 * Per meter provider, the buses an instrument() reports from now: a second one of the same bus
 * would record every histogram twice (another bus's events are its own: counted once).
 */
const metered = new WeakMap<MeterProvider, WeakSet<object>>();

/** What one instrument()'s metrics need. */
export interface MeteringOptions {
  readonly bus: object;
  /** The one given, else the global one (`undefined`). */
  readonly meterProvider: MeterProvider | undefined;
  readonly meter: (provider: MeterProvider) => Meter;
  readonly policies: PolicyRegistry;
  readonly label: (name: string) => string;
  readonly maxPolicies: number;
}

/**
 * Puts every part on `meter`, all or nothing: a part that throws (a meter of the user's) takes
 * those put on before it off the meter, and its error is the one thrown, whatever their cleanup
 * throws. Returns what takes them all off (each, whatever another throws).
 */
function attachAll(parts: readonly Part[], meter: Meter): () => void {
  const detaches: (() => void)[] = [];
  try {
    for (const part of parts) detaches.push(part.attach(meter));
  } catch (error) {
    try {
      runAll(detaches);
    } catch {
      // The setup's error is the one to tell.
    }
    throw error;
  }
  return () => runAll(detaches);
}

/** Takes `bus`'s place on `provider`, or tells whether another instrument() holds it. */
function claim(provider: MeterProvider, bus: object): boolean {
  let buses = metered.get(provider);
  if (buses === undefined) metered.set(provider, (buses = new WeakSet()));
  if (buses.has(bus)) return false;
  buses.add(bus);
  return true;
}

/** The metrics of one instrument(), see {@link startMetering}. */
export interface Metering {
  /** The event types the metrics read. */
  readonly types: readonly EventType[];
  /** Records `event` (labelled already). */
  record(type: EventType, event: HoldfastEvent): void;
  /** Records a `chaos.toxic` event, as emitted. */
  toxic(event: EventOf<'chaos.toxic'>): void;
  forget(name: string): void;
  /** Drops a breaker's series and last state only (a failover set of its name stays). */
  forgetBreaker(name: string): void;
  dispose(): void;
}

/**
 * What instrument()s waiting for a global meter provider run when one may have been registered,
 * or a bus's place on one freed. Each catches what it throws.
 */
const waiters = new Set<() => void>();
const wake = () => {
  for (const waiter of [...waiters]) waiter();
};
let hooked = false;
/**
 * Wakes the waiters as soon as the SDK registers its provider (`NodeSDK.start()` calls
 * `metrics.setGlobalMeterProvider()`): the API has no proxy meter provider, and its no-op meters
 * never call a gauge's callback, so nothing else would run before the SDK's first collection. Set
 * through another copy of the API, a provider is found at the next event instead.
 */
function hook(): void {
  if (hooked) return;
  hooked = true;
  const set = metrics.setGlobalMeterProvider;
  metrics.setGlobalMeterProvider = (provider) => {
    const registered = set.call(metrics, provider);
    wake();
    return registered;
  };
}

/**
 * The metrics of one instrument(), on the meter provider given, else on the global one. When
 * that is still the no-op one (the SDK registers its own later: NodeSDK.start() after this
 * module ran), they move to the global one as it is registered, with what they kept meanwhile
 * (a breaker's last state, a limiter's limit, toxics on, anomaly scores): their parts keep it
 * apart from any meter. Unless another instrument() reports this bus there already (each call
 * would count twice): this one then waits for it to stop, checking at each event (a lookup).
 */
export function startMetering(o: MeteringOptions): Metering {
  const events = meterEvents(o.policies, o.label, o.maxPolicies);
  // Faults injected on purpose, counted apart (see chaos.ts).
  const chaos = meterChaos(o.maxPolicies);
  // Bulkheads, rate limiters, adaptive limiters, throttles, hedges and fallbacks (see limits.ts).
  const limits = meterLimits(o.policies, o.label);
  const parts = [events, chaos, limits];
  const handlers = { ...events.handlers, ...chaos.handlers, ...limits.handlers } as Handlers;
  const first = o.meterProvider ?? metrics.getMeterProvider();
  const meter = o.meter(first);
  // The no-op provider waited on to be replaced, until bound.
  const waiting = o.meterProvider === undefined && meter === createNoopMeter() ? first : undefined;
  // The provider whose place this holds, and what takes the parts off its meter.
  let provider: MeterProvider | undefined;
  let detach: (() => void) | undefined;
  const leave = () => {
    if (provider === undefined) return;
    metered.get(provider)?.delete(o.bus);
    provider = undefined;
    // Another instrument() of this bus waiting for the place takes it now.
    wake();
  };
  const take = (to: MeterProvider, meter: () => Meter) => {
    provider = to;
    try {
      detach = attachAll(parts, meter());
    } catch (error) {
      leave();
      throw error;
    }
  };
  // What the next event runs first while waiting: binds, or tells why binding failed. Then none:
  // once bound, an event costs no check but this one.
  let settle: (() => void) | undefined;
  const bind = () => {
    const global = metrics.getMeterProvider();
    if (global === waiting || !claim(global, o.bus)) return;
    waiters.delete(woken);
    settle = undefined;
    // A meter that throws: nothing recorded, as on the no-op one, and told by the bus once.
    take(global, () => o.meter(global));
  };
  const woken = () => {
    try {
      bind();
    } catch (error) {
      settle = () => {
        settle = undefined;
        throw error;
      };
    }
  };
  if (waiting === undefined) {
    if (!claim(first, o.bus)) {
      const message = 'already has holdfast metrics of this bus; stop the other instrument() first';
      throw new HoldfastConfigError('instrument', [{ path: 'meterProvider', message }]);
    }
    take(first, () => meter);
  } else {
    settle = bind;
    waiters.add(woken);
    hook();
  }
  return {
    types: Object.keys(handlers) as EventType[],
    record(type, event) {
      if (settle !== undefined) settle();
      (handlers[type] as ((event: HoldfastEvent) => void) | undefined)?.(event);
    },
    toxic(event) {
      if (settle !== undefined) settle();
      chaos.toxic(event);
    },
    forget(name) {
      events.forget(name);
      limits.forget(name);
    },
    forgetBreaker(name) {
      events.forgetBreaker(name);
    },
    dispose() {
      waiters.delete(woken);
      settle = undefined;
      const off = detach;
      detach = undefined;
      // The place is freed whatever the meter throws taking the parts off: kept, no instrument()
      // of this bus could report there again.
      try {
        off?.();
      } finally {
        leave();
      }
    },
  };
}
