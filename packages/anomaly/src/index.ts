/**
 * Online anomaly detection over holdfast's bus metrics: a robust baseline and streaming
 * Half-Space Trees that learn one sample at a time, a watch that acts before a failure, offline
 * scoring of series, and NAB-style evaluation.
 * @module @holdfast/anomaly
 */
export { type BaselineVerdict, type RobustBaseline, robustBaseline } from './baseline.js';
export { type ForestVerdict, type HalfSpaceForest, halfSpaceForest } from './forest.js';
export {
  type SyntheticOptions,
  type SyntheticProfile,
  type SyntheticSeries,
  syntheticProfiles,
  syntheticSeries,
} from './generate.js';
export type { Verdict } from './hysteresis.js';
export { type NabInput, type NabProfile, type NabResult, nabProfiles, nabScore, nabTotal } from './nab.js';
export { type AnomalyWatchOptions, type BaselineOptions, type ForestOptions, watchMetrics } from './options.js';
export {
  type MetricTable,
  parseMetricsCsv,
  type ScoredPoint,
  type ScoredSeries,
  type ScoreSeriesOptions,
  type SeriesAnomaly,
  scoreSeries,
} from './series.js';
export {
  type AnomalyWatch,
  type AnomalyWatchSnapshot,
  anomalyWatch,
  type WatchedKey,
  type WatchedMetric,
  type WatchMetric,
} from './watch.js';
