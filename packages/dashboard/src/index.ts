/**
 * A live page of every breaker and endpoint (server-sent events), a JSON snapshot, and /health
 * handlers.
 * @module @holdfast/dashboard
 */

export type { AnomalyChart, AnomalyPoint } from './anomaly.js';
export type { ChaosView } from './chaos.js';
export {
  type DashboardHandler,
  dashboard,
  type FastifyLikeInstance,
  fastifyDashboard,
} from './dashboard.js';
export {
  type FastifyLikeReply,
  type FastifyLikeRequest,
  healthHandler,
  type NodeHandler,
  toFastify,
} from './health.js';
export type {
  AdaptiveRow,
  BulkheadRow,
  HedgeRow,
  LimitEventCount,
  LimitsView,
  RateLimiterRow,
  ThrottleRow,
} from './limits.js';
export { type DashboardOptions, dashboardOptionsSchema } from './options.js';
export type { BreakerRow, DashboardSnapshot, IdempotencyCounters, RetryCounters, StreamView } from './state.js';
