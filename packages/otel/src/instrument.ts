import {
  type EventType,
  bus as globalBus,
  policies as globalPolicies,
  type HoldfastEvent,
  parseOptions,
  stateChangeEvents,
} from '@holdfast/core';
import { metrics, trace } from '@opentelemetry/api';
import { meterChaos } from './chaos.js';
import { meterLimits } from './limits.js';
import { type Handlers, meterEvents } from './metrics.js';
import { type InstrumentOptions, instrumentOptionsSchema } from './options.js';
import { annotate, callEvents } from './spans.js';

const scope = { name: '@holdfast/otel', version: '0.1.0' };

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
  const meter = o.metrics
    ? (o.meterProvider ?? metrics.getMeterProvider()).getMeter(scope.name, scope.version)
    : undefined;
  const events = meter ? meterEvents(meter, o.policies ?? globalPolicies) : undefined;
  // Faults injected on purpose, counted apart (see chaos.ts).
  const chaos = meter ? meterChaos(meter) : undefined;
  // Bulkheads, rate limiters, adaptive limiters, throttles, hedges and fallbacks (see limits.ts).
  const limits = meter ? meterLimits(meter, o.policies ?? globalPolicies) : undefined;
  const metered = {
    handlers: { ...events?.handlers, ...chaos?.handlers, ...limits?.handlers } as Handlers,
    dispose: () => {
      events?.dispose();
      chaos?.dispose();
      limits?.dispose();
    },
  };
  const tracer = (o.tracerProvider ?? trace.getTracerProvider()).getTracer(scope.name, scope.version);
  const spanTypes = new Set<EventType>(o.spans ? [...callEvents, ...stateChangeEvents] : []);

  const types = new Set<EventType>([...(Object.keys(metered.handlers) as EventType[]), ...spanTypes]);
  const offs = [...types].map((type) => {
    const meter = metered.handlers[type] as ((event: HoldfastEvent) => void) | undefined;
    const span = spanTypes.has(type);
    const listener = (event: HoldfastEvent) => {
      meter?.(event);
      if (span) annotate(tracer, event);
    };
    return (bus.on as (type: EventType, listener: (event: HoldfastEvent) => void) => () => void)(type, listener);
  });
  let active = true;
  return () => {
    if (!active) return;
    active = false;
    for (const off of offs) off();
    metered.dispose();
  };
}
