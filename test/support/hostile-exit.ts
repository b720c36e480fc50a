/**
 * Run as a child process by the hostile reviews: builds a failover set with health checks, role
 * discovery, ejection and per-try timeouts, and an anomaly watch acting on it, on the real clock;
 * makes calls (one times out, one is ejected) and returns WITHOUT dispose(). The process must
 * exit on its own: nothing of holdfast may hold it open.
 */
import { anomalyWatch } from '@holdfast/anomaly';
import { createBus } from '@holdfast/core';
import { failover } from '@holdfast/failover';

const bus = createBus();
const api = failover({
  bus,
  endpoints: ['a', 'b', 'c'].map((name) => ({ name, target: name })),
  health: { check: () => true, interval: 50 },
  roles: {
    check: (e) => (e.name === 'a' ? { role: 'primary', token: [1, 1] } : { role: 'replica', lag: 0 }),
    interval: 50,
  },
  ejection: { consecutiveFailures: 1, baseTime: 60_000, maxTime: 120_000 },
  timeout: 100,
  retry: { idempotent: true },
});
const watch = anomalyWatch({ bus, interval: 100, actions: { eject: { failover: api } } });
await api.execute((e) => e.name);
await api.execute(() => new Promise(() => {}), { intent: 'read' }).catch(() => {});
await api.execute(() => Promise.reject(new Error('x')), { intent: 'read' }).catch(() => {});
for (let i = 0; i < 20; i++) watch.observe('api/b', 10, 'success');
console.log('done');
