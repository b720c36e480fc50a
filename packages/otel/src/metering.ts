import {
  type EventOf,
  type EventType,
  HoldfastConfigError,
  type HoldfastEvent,
  type PolicyRegistry,
} from '@holdfast/core';
import { createNoopMeter, type Meter, type MeterProvider, metrics } from '@opentelemetry/api';
import { meterChaos } from './chaos.js';
import { meterLimits } from './limits.js';
import { type Handlers, meterEvents } from './metrics.js';

/**
 * Per meter provider, the buses an instrument() reports from now: a second one of the same bus
 * would record every histogram twice (another bus's events are its own: counted once).
 */
const metered = new WeakMap<MeterProvider, WeakSet<object>>();

/** The metrics of one instrument() on one meter: events, chaos, limits (see their files). */
interface Parts {
  readonly handlers: Handlers;
  readonly toxic: (event: EventOf<'chaos.toxic'>) => void;
  forget(name: string): void;
  dispose(): void;
}

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
 * Builds every part on `meter`, all or nothing: a part that throws (a meter of the user's) takes
 * the batch callbacks of those built before it off the meter.
 */
function build(meter: Meter, o: MeteringOptions): Parts {
  const built: { dispose(): void }[] = [];
  try {
    const events = meterEvents(meter, o.policies, o.label, o.maxPolicies);
    built.push(events);
    // Faults injected on purpose, counted apart (see chaos.ts).
    const chaos = meterChaos(meter, o.maxPolicies);
    built.push(chaos);
    // Bulkheads, rate limiters, adaptive limiters, throttles, hedges and fallbacks (see limits.ts).
    const limits = meterLimits(meter, o.policies, o.label);
    built.push(limits);
    return {
      handlers: { ...events.handlers, ...chaos.handlers, ...limits.handlers } as Handlers,
      toxic: chaos.toxic,
      forget: (name) => {
        events.forget(name);
        limits.forget(name);
      },
      dispose: () => {
        for (const part of built) part.dispose();
      },
    };
  } catch (error) {
    for (const part of built) part.dispose();
    throw error;
  }
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
  dispose(): void;
}

/**
 * The metrics of one instrument(), on the meter provider given, else on the global one. When
 * that is still the no-op one (the SDK registers its own later: NodeSDK.start() after this
 * module ran), they are bound to the global one at the first event after it is registered, and
 * until then record nothing: the API has no proxy meter provider, as it has a tracer one.
 */
export function startMetering(o: MeteringOptions): Metering {
  const first = o.meterProvider ?? metrics.getMeterProvider();
  const meter = o.meter(first);
  // The no-op provider waited on to be replaced, until bound; then the provider whose place it holds.
  let waiting = o.meterProvider === undefined && meter === createNoopMeter() ? first : undefined;
  let provider: MeterProvider | undefined;
  const leave = () => {
    if (provider !== undefined) metered.get(provider)?.delete(o.bus);
    provider = undefined;
  };
  if (waiting === undefined) {
    if (!claim(first, o.bus)) {
      const message = 'already has holdfast metrics of this bus; stop the other instrument() first';
      throw new HoldfastConfigError('instrument', [{ path: 'meterProvider', message }]);
    }
    provider = first;
  }
  let parts: Parts;
  try {
    parts = build(meter, o);
  } catch (error) {
    leave();
    throw error;
  }
  // To the global provider once one is registered, unless another instrument() reports this bus
  // there already (each call would count twice): this one waits for it to stop.
  const bind = () => {
    const global = metrics.getMeterProvider();
    if (global === waiting || !claim(global, o.bus)) return;
    waiting = undefined;
    provider = global;
    try {
      const bound = build(o.meter(global), o);
      parts.dispose();
      parts = bound;
    } catch (error) {
      // A meter that throws: nothing recorded, as on the no-op one, and told by the bus.
      leave();
      throw error;
    }
  };
  return {
    types: Object.keys(parts.handlers) as EventType[],
    record(type, event) {
      if (waiting !== undefined) bind();
      (parts.handlers[type] as ((event: HoldfastEvent) => void) | undefined)?.(event);
    },
    toxic(event) {
      if (waiting !== undefined) bind();
      parts.toxic(event);
    },
    forget: (name) => parts.forget(name),
    dispose() {
      parts.dispose();
      leave();
    },
  };
}
