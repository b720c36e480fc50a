/**
 * Calls that survive the loss of an endpoint: active-active balancing, active-passive failover,
 * health checks, outlier ejection, failback; role discovery, read/write routing and fencing.
 * @module @holdfast/failover
 */
export type { BudgetLike } from './budget.js';
export type { Endpoint, Health } from './endpoint.js';
export { NoHealthyEndpointError, NoPrimaryError, UnconfirmedWriteError } from './errors.js';
export {
  type EndpointCall,
  type EndpointSnapshot,
  type Failover,
  type FailoverCallRetry,
  type FailoverExecuteOptions,
  type FailoverSnapshot,
  failover,
  type SplitBrainSnapshot,
} from './failover.js';
export {
  type BalancerName,
  type EjectionOptions,
  type EjectOptions,
  type EndpointOptions,
  ejectOptionsSchema,
  type FailoverOptions,
  type FailoverRetryOptions,
  type FailureRateOptions,
  failoverOptionsSchema,
  type HealthOptions,
  type Mode,
  type RolesOptions,
} from './options.js';
export { neverReached } from './retryable.js';
export {
  compareTokens,
  type DiscoveredRole,
  type ErrorClass,
  type RoleCheckSettings,
  type RoleReport,
  tokenText,
} from './roles.js';
