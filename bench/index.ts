import { benchAnomaly } from './anomaly.js';
import { benchBreaker } from './breaker.js';
import { benchChaos } from './chaos.js';
import { benchCore } from './core.js';
import { benchFailover } from './failover.js';
import { benchHttp } from './http.js';
import { benchHttpServer } from './http-server.js';
import { benchIdempotency } from './idempotency.js';
import { benchLimit, benchLimitRedis } from './limit.js';
import { benchOtel } from './otel.js';
import { benchPipeline } from './pipeline.js';
import { benchRetry } from './retry.js';

const suites: Record<string, () => Promise<void>> = {
  core: benchCore,
  pipeline: async () => {
    await benchPipeline();
  },
  failover: benchFailover,
  idempotency: benchIdempotency,
  http: benchHttp,
  'http-server': benchHttpServer,
  breaker: benchBreaker,
  retry: benchRetry,
  limit: benchLimit,
  'limit-redis': benchLimitRedis,
  otel: benchOtel,
  chaos: benchChaos,
  anomaly: benchAnomaly,
};

// `pnpm bench` runs every suite; `pnpm bench core` runs one.
const only = process.argv.slice(2);
for (const [name, run] of Object.entries(suites)) {
  if (only.length === 0 || only.includes(name)) await run();
}
