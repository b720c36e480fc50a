/**
 * Fault, latency and outcome injection policies, fetch faults, an in-process TCP fault proxy and
 * drills: test a setup before production does.
 * @module @holdfast/chaos
 */
export { type FaultProxyOptions, faultProxyOptionsSchema, type RandomSource } from './options.js';
export {
  type FaultProxy,
  type FaultProxySnapshot,
  faultProxy,
  type ProxyConnection,
  type ToxicHandle,
} from './proxy.js';
export { type ActiveToxic, type Direction, type Toxic, type ToxicType, toxicSchema } from './toxics.js';
