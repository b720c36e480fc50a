import {
  type EventType,
  bus as globalBus,
  policies as globalPolicies,
  HoldfastConfigError,
  type HoldfastEvent,
  labelled,
  PolicyLabels,
  parseOptions,
  plainPolicies,
  shieldBus,
  stateChangeEvents,
} from '@holdfast/core';
import { type MeterProvider, metrics, trace } from '@opentelemetry/api';
import { meterChaos } from './chaos.js';
import { meterLimits } from './limits.js';
import { type Handlers, meterEvents } from './metrics.js';
import { type InstrumentOptions, instrumentOptionsSchema } from './options.js';
import { annotate, callEvents } from './spans.js';

const scope = { name: '@holdfast/otel', version: '0.1.0' };

/**
 * Per meter provider, the buses an instrument() reports from now: a second one of the same bus
 * would record every histogram twice (another bus's events are its own: counted once).
 */
const metered = new WeakMap<MeterProvider, WeakSet<object>>();

/** Stops the instrumentation: unsubscribes from the bus and drops the gauges' callback. */
export type Uninstrument = () => void;

/**
 * Turns holdfast's bus into OpenTelemetry metrics (counters by outcome, latency and retry-delay
 * histograms, breaker state and endpoint gauges) and span events on the active span.
 *
 * @example
 * const stop = instrument({ meterProvider });
 * // ... on shutdown
 * stop();
 */
export function instrument(options: InstrumentOptions = {}): Uninstrument {
  const o = parseOptions('instrument', instrumentOptionsSchema, options);
  const bus = o.bus ?? globalBus;
  const policies = plainPolicies(o.policies ?? globalPolicies);
  const provider = o.metrics ? (o.meterProvider ?? metrics.getMeterProvider()) : undefined;
  const buses = provider && (metered.get(provider) ?? metered.set(provider, new WeakSet()).get(provider));
  if (buses?.has(bus)) {
    const message = 'already has holdfast metrics of this bus; stop the other instrument() first';
    throw new HoldfastConfigError('instrument', [{ path: 'meterProvider', message }]);
  }
  const meter = provider?.getMeter(scope.name, scope.version);
  // One name per policy in every attribute and span: a user's own policy named by its URL keeps
  // its password out, two named alike but for it stay two, and past maxPolicies they share
  // `_other` (see PolicyLabels). The hot path pays one lookup; a stream of new names grows nothing.
  const policyLabels = new PolicyLabels(o.maxPolicies, 'instrument');
  const label = (name: string) => policyLabels.label(name);
  const events = meter ? meterEvents(meter, policies, label, o.maxPolicies) : undefined;
  // Faults injected on purpose, counted apart (see chaos.ts).
  const chaos = meter ? meterChaos(meter, o.maxPolicies) : undefined;
  // Bulkheads, rate limiters, adaptive limiters, throttles, hedges and fallbacks (see limits.ts).
  const limits = meter ? meterLimits(meter, policies, label) : undefined;
  const metering = {
    handlers: { ...events?.handlers, ...chaos?.handlers, ...limits?.handlers } as Handlers,
    dispose: () => {
      events?.dispose();
      chaos?.dispose();
      limits?.dispose();
    },
  };
  const tracer = (o.tracerProvider ?? trace.getTracerProvider()).getTracer(scope.name, scope.version);
  const spanTypes = new Set<EventType>(o.spans ? [...callEvents, ...stateChangeEvents] : []);

  // A user's bus whose unsubscribe is none or throws must not leave stop() half done (see shieldBus).
  const shielded = shieldBus(bus, 'instrument');
  const on = shielded.on.bind(shielded) as (type: EventType, listener: (event: HoldfastEvent) => void) => () => void;
  const offs: (() => void)[] = [];
  let active = true;
  const stop = () => {
    if (!active) return;
    active = false;
    for (const off of offs) off();
    metering.dispose();
    buses?.delete(bus);
  };
  try {
    // The meter and the spans listen apart: a meter that throws must not cost the trace its events.
    // Each hides what it exports as it exports it (the source here, the rest in its handler).
    for (const [type, handler] of Object.entries(metering.handlers)) {
      const meter = handler as (event: HoldfastEvent) => void;
      offs.push(on(type as EventType, (event) => meter(labelled(event, label))));
    }
    for (const type of spanTypes) offs.push(on(type, (event) => annotate(tracer, labelled(event, label))));
    // A proxy's toxics as emitted: proxies are labelled apart (see chaos.ts).
    if (chaos) offs.push(shielded.on('chaos.toxic', chaos.toxic));
    // A policy that leaves the registry (a breakerRegistry's evicted host) takes its series along.
    if (typeof policies.onUnregister === 'function') {
      offs.push(
        policies.onUnregister((_kind, registered) => {
          const name = policyLabels.forget(registered);
          if (name === undefined) return;
          events?.forget(name);
          limits?.forget(name);
        }),
      );
    }
  } catch (error) {
    // A user's bus whose on() throws: the listeners put on and the gauges' callbacks go too.
    stop();
    throw error;
  }
  buses?.add(bus);
  return stop;
}
