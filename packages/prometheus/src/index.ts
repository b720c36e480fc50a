/**
 * Prometheus metrics from holdfast's event bus and snapshots, on prom-client.
 * @module @holdfast/prometheus
 */
export { collect, type StopCollecting } from './collect.js';
export { type CollectOptions, collectOptionsSchema } from './options.js';
