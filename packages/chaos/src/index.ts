/**
 * Fault, latency and outcome injection policies, fetch faults, an in-process TCP fault proxy and
 * drills: test a setup before production does.
 * @module @holdfast/chaos
 */
export {
  assertDrill,
  type DrillDriver,
  type DrillLoad,
  type DrillOptions,
  type DrillRequest,
  type DrillResult,
  type DrillSend,
  type DrillStep,
  drill,
  drillOptionsSchema,
  type ObjectiveResult,
} from './drill.js';
export { DrillFailedError, InjectedFaultError } from './errors.js';
export {
  type FaultyFetch,
  type FaultyFetchOptions,
  type FetchFault,
  faultyFetch,
  faultyFetchOptionsSchema,
  fetchFaultSchema,
} from './fetch.js';
export {
  type InjectionKind,
  type InjectionPolicy,
  injectBehavior,
  injectFault,
  injectLatency,
  injectOutcome,
} from './injection.js';
export {
  type EnabledSwitch,
  type FaultProxyOptions,
  faultProxyOptionsSchema,
  type InjectBehaviorOptions,
  type InjectFaultOptions,
  type InjectLatencyOptions,
  type InjectOutcomeOptions,
  injectBehaviorOptionsSchema,
  injectFaultOptionsSchema,
  injectLatencyOptionsSchema,
  injectOutcomeOptionsSchema,
  type LatencyInput,
  type RandomSource,
} from './options.js';
export {
  type FaultProxy,
  type FaultProxySnapshot,
  faultProxy,
  type ProxyConnection,
  type ToxicHandle,
} from './proxy.js';
export { chaosSwitch } from './switch.js';
export { type ActiveToxic, type Direction, type Toxic, type ToxicType, toxicSchema } from './toxics.js';
