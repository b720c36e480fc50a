/**
 * Circuit breakers: per-key registries, slow-call detection, snapshots and restore.
 * @module @holdfast/breaker
 */
export { CircuitBreakerPolicy, circuitBreaker } from './breaker.js';
export {
  type BreakerSettings,
  type BreakerSnapshot,
  type BreakerState,
  breakerOptionsSchema,
  breakerSnapshotSchema,
  breakerStates,
  type CircuitBreakerOptions,
} from './options.js';
export { defaultIsFailure, type IsFailure, type Outcome, type Settled } from './outcome.js';
export {
  BreakerRegistry,
  type BreakerRegistryOptions,
  breakerRegistry,
  type KeySettings,
  type RegistrySnapshot,
  registryOptionsSchema,
  registrySnapshotSchema,
} from './registry.js';
