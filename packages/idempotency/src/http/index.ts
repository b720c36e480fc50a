export { BodyCollector, defaultReplayHeaders, type HttpResponse, pickHeaders, replayableHeaders } from './capture.js';
export {
  type Decision,
  HttpIdempotency,
  NodeRequestView,
  type OutgoingHeaders,
  type RequestView,
  Run,
} from './engine.js';
export { type RequestShape, requestFingerprint, sameFingerprint } from './fingerprint.js';
export { type KeyHeader, parseKeyHeader } from './key.js';
export {
  type HttpIdempotencyOptions,
  httpIdempotencyOptionsSchema,
  type ParsedHttpOptions,
  type RouteIdempotencyOptions,
} from './options.js';
export { type ProblemKind, problem, problemTypes } from './problem.js';
