/**
 * Turns holdfast's event bus into OpenTelemetry metrics and span events.
 * @module @holdfast/otel
 */
export { instrument, type Uninstrument } from './instrument.js';
export { attributeNames, durationBuckets, metricNames } from './names.js';
export { type InstrumentOptions, instrumentOptionsSchema } from './options.js';
export { spanEventName } from './spans.js';
