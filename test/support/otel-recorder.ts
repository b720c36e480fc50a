/**
 * A MeterProvider and a TracerProvider that record everything @holdfast/otel hands them, with
 * no SDK in between: what a collection observes is exactly what instrument() holds in memory
 * (the SDK would cap it at its own cardinality limit and hide the growth).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import {
  type Attributes,
  type BatchObservableCallback,
  type BatchObservableResult,
  type Context,
  type ContextManager,
  type Meter,
  type MeterProvider,
  type Observable,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  type SpanOptions,
  type Tracer,
  type TracerProvider,
} from '@opentelemetry/api';

/** One value as an exporter would get it. */
export interface Recorded {
  readonly instrument: string;
  readonly value: number;
  readonly attributes: Attributes;
}

/** A span as an exporter would get it: its name, attributes and events. */
export interface RecordedSpan {
  readonly name: string;
  readonly attributes: Attributes;
  readonly events: { readonly name: string; readonly attributes: Attributes }[];
}

type Instrument = Observable & { readonly name: string };

/** Records every histogram value as it comes, and every observation at `collect()`. */
export class RecordingMeterProvider implements MeterProvider {
  readonly histograms: Recorded[] = [];
  readonly #callbacks = new Set<BatchObservableCallback>();

  /** `throwOnRecord`: every histogram.record() throws, as a broken SDK or View might. */
  constructor(readonly options: { readonly throwOnRecord?: boolean } = {}) {}

  getMeter(): Meter {
    const observable = (name: string): Instrument => ({
      name,
      addCallback: () => {},
      removeCallback: () => {},
    });
    const histograms = this.histograms;
    const meter = {
      createHistogram: (name: string) => ({
        record: (value: number, attributes: Attributes = {}) => {
          if (this.options.throwOnRecord) throw new Error('meter is broken');
          histograms.push({ instrument: name, value, attributes });
        },
      }),
      createObservableCounter: observable,
      createObservableGauge: observable,
      createObservableUpDownCounter: observable,
      addBatchObservableCallback: (cb: BatchObservableCallback) => void this.#callbacks.add(cb),
      removeBatchObservableCallback: (cb: BatchObservableCallback) => void this.#callbacks.delete(cb),
    };
    return meter as unknown as Meter;
  }

  /** Runs every batch callback once, as a reader's collection does, and returns what they observed. */
  async collect(): Promise<Recorded[]> {
    const out: Recorded[] = [];
    const result: BatchObservableResult = {
      observe: (instrument: Observable, value: number, attributes: Attributes = {}) =>
        out.push({ instrument: (instrument as Instrument).name, value, attributes }),
    };
    for (const cb of this.#callbacks) await cb(result);
    return out;
  }
}

const noContext: SpanContext = { traceId: `${'0'.repeat(31)}1`, spanId: `${'0'.repeat(15)}1`, traceFlags: 1 };

/** Records every span started on it (the root spans state changes get outside any call). */
export class RecordingTracerProvider implements TracerProvider {
  readonly spans: RecordedSpan[] = [];

  getTracer(): Tracer {
    const spans = this.spans;
    const startSpan = (name: string, options: SpanOptions = {}): Span => {
      const recorded: RecordedSpan = { name, attributes: { ...options.attributes }, events: [] };
      spans.push(recorded);
      const span: Span = {
        spanContext: () => noContext,
        setAttribute: (key, value) => {
          if (value !== undefined) recorded.attributes[key] = value;
          return span;
        },
        setAttributes: (attributes) => {
          Object.assign(recorded.attributes, attributes);
          return span;
        },
        addEvent: (eventName, attributes) => {
          recorded.events.push({ name: eventName, attributes: (attributes as Attributes | undefined) ?? {} });
          return span;
        },
        addLink: () => span,
        addLinks: () => span,
        setStatus: () => span,
        updateName: () => span,
        end: () => {},
        isRecording: () => true,
        recordException: () => {},
      };
      return span;
    };
    return {
      startSpan,
      startActiveSpan: (() => {
        throw new Error('not used by @holdfast/otel');
      }) as Tracer['startActiveSpan'],
    };
  }
}

/** The AsyncLocalStorage context manager of @opentelemetry/context-async-hooks, in a few lines. */
export class AlsContextManager implements ContextManager {
  readonly #als = new AsyncLocalStorage<Context>();
  active(): Context {
    return this.#als.getStore() ?? ROOT_CONTEXT;
  }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    ctx: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return this.#als.run(ctx, () => fn.apply(thisArg, args));
  }
  bind<T>(_ctx: Context, target: T): T {
    return target;
  }
  enable(): this {
    return this;
  }
  disable(): this {
    this.#als.disable();
    return this;
  }
}
