import {
  type EventType,
  bus as globalBus,
  policies as globalPolicies,
  type HoldfastEvent,
  labelled,
  OTHER_POLICY,
  PolicyLabels,
  parseOptions,
  plainPolicies,
  runAll,
  shieldBus,
} from '@holdfast/core';
import { trace } from '@opentelemetry/api';
import { type Metering, startMetering } from './metering.js';
import { type InstrumentOptions, instrumentOptionsSchema } from './options.js';
import { annotate, joinSpans } from './spans.js';

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
  const policies = plainPolicies(o.policies ?? globalPolicies);
  // One name per policy in every attribute and span: a user's own policy named by its URL keeps
  // its password out, two named alike but for it stay two, and past maxPolicies they share
  // `_other` (see PolicyLabels). The hot path pays one lookup; a stream of new names grows nothing.
  const policyLabels = new PolicyLabels(o.maxPolicies, 'instrument');
  const label = (name: string) => policyLabels.label(name);
  // A user's bus whose unsubscribe is none or throws must not leave stop() half done (see shieldBus).
  const shielded = shieldBus(bus, 'instrument');
  const on = shielded.on.bind(shielded) as (type: EventType, listener: (event: HoldfastEvent) => void) => () => void;
  let metering: Metering | undefined;
  const offs: (() => void)[] = [];
  let active = true;
  const stop = () => {
    if (!active) return;
    active = false;
    // Each step, whatever one throws (a meter that cannot take its callbacks off): its place on
    // the meter provider is freed all the same. Then the first error is told.
    runAll([...offs, () => metering?.dispose()]);
  };
  try {
    if (o.metrics) {
      const meters = startMetering({
        bus,
        meterProvider: o.meterProvider,
        meter: (provider) => provider.getMeter(scope.name, scope.version),
        policies,
        label,
        maxPolicies: o.maxPolicies,
      });
      metering = meters;
      // The meter and the spans listen apart: a meter that throws must not cost the trace its
      // events. Each hides what it exports as it exports it (the source here, the rest in its handler).
      for (const type of meters.types) offs.push(on(type, (event) => meters.record(type, labelled(event, label))));
      // A proxy's toxics as emitted: proxies are labelled apart (see chaos.ts).
      offs.push(shielded.on('chaos.toxic', (event) => meters.toxic(event)));
    }
    if (o.spans) {
      const tracerProvider = o.tracerProvider ?? trace.getTracerProvider();
      const tracer = tracerProvider.getTracer(scope.name, scope.version);
      // Once per bus: a second instrument() of it (a meter provider per backend) adds metrics only.
      offs.push(joinSpans(bus, tracerProvider, (event) => annotate(tracer, labelled(event, label)), on));
    }
    // A policy that leaves the registry (a breakerRegistry's evicted host) takes its series along.
    if (typeof policies.onUnregister === 'function') {
      // Per kind, before the name goes: a breaker disposed while a failover set of its name stays
      // takes its breaker series and last state along; the name keeps its label for the set.
      offs.push(
        policies.onUnregister(
          (kind, registered) => {
            const name = kind === 'breaker' ? policyLabels.peek(registered) : undefined;
            if (name !== undefined && name !== OTHER_POLICY) metering?.forgetBreaker(name);
          },
          { perKind: true },
        ),
      );
      offs.push(
        policies.onUnregister((_kind, registered) => {
          const name = policyLabels.forget(registered);
          if (name !== undefined) metering?.forget(name);
        }),
      );
    }
  } catch (error) {
    // All or nothing: a bus, meter or tracer provider of the user's that throws halfway leaves no
    // listener, no gauge callback and no place on a provider behind.
    try {
      stop();
    } catch {
      // The setup's error (a refusal: why) is the one to tell.
    }
    throw error;
  }
  return stop;
}
