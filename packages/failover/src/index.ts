export type { BudgetLike } from './budget.js';
export type { Endpoint, Health } from './endpoint.js';
export { NoHealthyEndpointError } from './errors.js';
export {
  type EndpointCall,
  type EndpointSnapshot,
  type Failover,
  type FailoverExecuteOptions,
  type FailoverSnapshot,
  failover,
} from './failover.js';
export {
  type BalancerName,
  type EjectionOptions,
  type EndpointOptions,
  type FailoverOptions,
  failoverOptionsSchema,
  type HealthOptions,
  type Mode,
  type RetryOptions,
} from './options.js';
export { neverReached } from './retryable.js';
