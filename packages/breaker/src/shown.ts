/**
 * A key as events, snapshots, errors and metrics show it: core's `shownKey`, which the anomaly
 * watch shows its keys with too, so one key shows alike in both.
 */
export { shownKey } from '@holdfast/core';
