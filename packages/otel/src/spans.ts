import {
  type EventType,
  eventTypes,
  HoldfastConfigError,
  type HoldfastEvent,
  hiddenName,
  stateChangeEvents,
} from '@holdfast/core';
import {
  type Attributes,
  ProxyTracerProvider,
  type Span,
  type Tracer,
  type TracerProvider,
  trace,
} from '@opentelemetry/api';
import { shortCode } from './metrics.js';
import { attributeNames as A } from './names.js';

/** Events that describe a call: they go on the span of the call that is active. */
export const callEvents: readonly EventType[] = eventTypes.filter(
  (t) =>
    t.startsWith('retry.') ||
    t === 'breaker.reject' ||
    t === 'timeout' ||
    (t.startsWith('idempotency.') && t !== 'idempotency.claim'),
);

// State changes go on the active span if there is one, else on a span of their own.
const transitions = new Set<EventType>(stateChangeEvents);
// Fields that are not attributes: the envelope, and idempotency keys (callers' data).
const skipped = new Set(['type', 'source', 'time', 'key', 'code']);

/** `retry.giveUp` -> `holdfast.retry.give_up`. */
export function spanEventName(type: EventType): string {
  return `holdfast.${type.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}`;
}

/**
 * The event's own fields as attributes: `holdfast.<type>.<field>`, and `code` as `error.type`.
 * Every string without the credentials it may carry (see hiddenName): a user's own policy emits
 * what it likes, a URL with its password as an endpoint's name. Its source is its policy label
 * already (see PolicyLabels), as its metrics show it.
 */
function attributesOf(event: HoldfastEvent): Attributes {
  const prefix = spanEventName(event.type);
  const attrs: Attributes = { [A.policy]: event.source };
  for (const [field, value] of Object.entries(event)) {
    if (skipped.has(field) || value === undefined || value === null) continue;
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') {
      const name = `${prefix}.${field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}`;
      attrs[name] = typeof value === 'string' ? hiddenName(value) : value;
    }
  }
  // One that hides differently had a credential in it: no short code then (`***` is none).
  if ('code' in event && event.code !== undefined) attrs[A.errorType] = shortCode(hiddenName(event.code));
  return attrs;
}

/** Attributes that sum up the call on its span; later events overwrite earlier ones. */
function summarize(span: Span, event: HoldfastEvent): void {
  switch (event.type) {
    case 'retry.attempt':
      // A number: text from an emitter of a user's own (a URL with its password) is no attempt.
      if (typeof event.attempt === 'number') span.setAttribute(A.retryAttempt, event.attempt);
      break;
    case 'retry.giveUp':
      span.setAttribute(A.retryReason, hiddenName(event.reason));
      break;
    case 'breaker.reject':
      span.setAttribute(A.breakerState, hiddenName(event.state));
      span.setAttribute('holdfast.breaker.rejected', true);
      break;
    case 'failover.switch':
      span.setAttribute(A.endpoint, hiddenName(event.to));
      break;
    case 'idempotency.replay':
      span.setAttribute('holdfast.idempotency.replayed', true);
      break;
  }
}

/**
 * Puts an event on the active span: a span event with its fields, plus summary attributes
 * (`holdfast.retry.attempt`, `holdfast.breaker.rejected`...). A state change seen outside any
 * recording span (a health check's timer, a breaker's half-open timer) gets a short span of its own.
 * Its source is the policy label its metrics show (see PolicyLabels).
 */
export function annotate(tracer: Tracer, event: HoldfastEvent): void {
  const active = trace.getActiveSpan();
  if (active?.isRecording()) {
    active.addEvent(spanEventName(event.type), attributesOf(event), event.time);
    summarize(active, event);
    return;
  }
  // A state change with no live span to go on (none active, or the call's span has ended, as
  // when a timer set during a call fires later) gets a root span of its own.
  if (transitions.has(event.type)) {
    tracer
      .startSpan(spanEventName(event.type), { root: true, attributes: attributesOf(event), startTime: event.time })
      .end(event.time);
  }
}

/** Events that go on spans: the call's, and state changes. */
const spanTypes: readonly EventType[] = [...callEvents, ...stateChangeEvents];

/** Per bus, the instrument()s that would annotate its spans, in the order they came (see joinSpans). */
const annotating = new WeakMap<
  object,
  {
    readonly provider: TracerProvider;
    readonly line: ((event: HoldfastEvent) => void)[];
    readonly offs: (() => void)[];
  }
>();

/**
 * Where a provider's spans go: the global one (`trace.getTracerProvider()`) is the API's proxy,
 * over the SDK's provider that may be given as well, so through its delegate (read each time: the
 * SDK may register after the proxy was taken).
 */
const spansOf = (provider: TracerProvider): TracerProvider =>
  provider instanceof ProxyTracerProvider ? provider.getDelegate() : provider;

/**
 * Puts one instrument()'s `annotator` in line to annotate `bus`'s events: the first in line still
 * running does, so two instrument()s of one bus (a meter provider each) put each event on its
 * span once and give a state change one span. The first subscribes (with `on`) listeners that stay
 * while the line has one. Returns what takes `annotator` out of line.
 *
 * Throws HoldfastConfigError when the bus's spans go to another tracer provider (the global one and
 * the SDK's under it are one): every event would go twice on the active span, whatever its provider.
 */
export function joinSpans(
  bus: object,
  provider: TracerProvider,
  annotator: (event: HoldfastEvent) => void,
  on: (type: EventType, listener: (event: HoldfastEvent) => void) => () => void,
): () => void {
  let shared = annotating.get(bus);
  if (shared !== undefined && spansOf(shared.provider) !== spansOf(provider)) {
    const message =
      "is not the one this bus's spans go to (another instrument()'s); pass spans: false or stop the other first";
    throw new HoldfastConfigError('instrument', [{ path: 'tracerProvider', message }]);
  }
  if (shared === undefined) {
    const line: ((event: HoldfastEvent) => void)[] = [];
    const offs: (() => void)[] = [];
    const annotate = (event: HoldfastEvent) => line[0]?.(event);
    try {
      for (const type of spanTypes) offs.push(on(type, annotate));
    } catch (error) {
      for (const off of offs) off();
      throw error;
    }
    annotating.set(bus, (shared = { provider, line, offs }));
  }
  const { line, offs } = shared;
  line.push(annotator);
  return () => {
    const at = line.indexOf(annotator);
    if (at !== -1) line.splice(at, 1);
    if (line.length > 0 || annotating.get(bus) !== shared) return;
    annotating.delete(bus);
    for (const off of offs) off();
  };
}
