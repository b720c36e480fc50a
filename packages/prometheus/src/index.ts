export { collect, type StopCollecting } from './collect.js';
export { type CollectOptions, collectOptionsSchema } from './options.js';
