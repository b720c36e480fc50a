/**
 * The event bus, Policy contract, pipeline(), timeout(), fallback(), hedge(), errors and clock shared by every holdfast
 * package.
 * @module @holdfast/core
 */
export {
  type AnyListener,
  type Bus,
  type BusOptions,
  bus,
  channelPrefix,
  createBus,
  type Listener,
  runAll,
  shieldBus,
  type Unsubscribe,
} from './bus.js';
export {
  hiddenName,
  labelled,
  OTHER_POLICY,
  PassMemo,
  PolicyLabels,
  PolicyNames,
  plainPolicies,
  ShownNames,
} from './cap.js';
export {
  type Clock,
  elapsedTime,
  ManualClock,
  realClock,
  type TimerHandle,
  type TimerOptions,
  whileLoading,
} from './clock.js';
export { attemptOf, CallScope } from './context.js';
export { type Deadline, DeadlineQueue } from './deadlines.js';
export {
  BrokenCircuitError,
  type ConfigIssue,
  DisposedError,
  type ErrorCode,
  errorCodes,
  HoldfastConfigError,
  HoldfastError,
  hasCode,
  isLocalRefusal,
  LocalRefusalError,
  TimeoutError,
} from './errors.js';
export {
  type AnomalyMetric,
  type ErrorLabel,
  type EventFields,
  type EventOf,
  type EventType,
  errorLabel,
  eventTypes,
  type HoldfastEvent,
  stateChangeEvents,
} from './events.js';
export { type FallbackCause, type FallbackOptions, fallback, fallbackOptionsSchema } from './fallback.js';
export {
  type BreakerView,
  type BudgetView,
  breakerStateAfter,
  breakerStates,
  type EndpointView,
  type FailoverView,
  type HealthCheck,
  type HealthReport,
  type HealthReportOptions,
  type HealthStatus,
  healthReport,
  healthReportOptionsSchema,
  readBreaker,
  readBudget,
  readFailover,
} from './health.js';
export {
  type HedgeExecuteOptions,
  type HedgeOptions,
  type HedgePolicy,
  type HedgeSnapshot,
  hedge,
  hedgeOptionsSchema,
} from './hedge.js';
export {
  busOption,
  clockOption,
  durationOption,
  fnOption,
  MAX_DELAY_MS,
  nameOption,
  ownPluginOptions,
  parseOptions,
  policiesOption,
  positiveDurationOption,
} from './options.js';
export {
  type CallContext,
  type ExecuteOptions,
  invoke,
  invokeIn,
  type Operation,
  type Pipeline,
  type Policy,
  pipeline,
} from './policy.js';
export { seededRandom } from './random.js';
export { defaultSecretParams, hideCredentials, hideSecrets, Redactor, shownKey } from './redact.js';
export {
  createPolicyRegistry,
  type PolicyRegistry,
  type PolicySnapshot,
  policies,
  registerSnapshot,
  type SnapshotKind,
  type SnapshotSource,
  snapshotErrorLabel,
  snapshots,
  type Unregister,
} from './registry.js';
export type { JsonValue, Snapshottable } from './snapshot.js';
export { type TimeoutOptions, timeout, timeoutOptionsSchema } from './timeout.js';
export { messageOf, warnOnce } from './warn.js';
