import { circuitBreaker } from '@holdfast/breaker';
import { createBus, ManualClock, seededRandom } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { describe, expect, it } from 'vitest';
import { anomalyWatch } from '../src/index.js';

const CREEP_AT = 60_000;
const FAIL_AT = CREEP_AT + 30_000;
const RECOVER_AT = FAIL_AT + 30_000;
const END = RECOVER_AT + 20_000;

/**
 * Three endpoints behind a failover set, a breaker per endpoint, 100 calls a second in simulated
 * time. Endpoint b's latency creeps from 20 ms to 400 ms over 30 s, then it fails every call for
 * 30 s, then recovers.
 */
async function drill(withWatch: boolean) {
  const clock = new ManualClock(0);
  const bus = createBus();
  const random = seededRandom(11);
  const breakers = Object.fromEntries(
    ['a', 'b', 'c'].map((n) => [n, circuitBreaker({ name: `api/${n}`, bus, clock, policies: false })]),
  );
  const api = failover({ name: 'api', endpoints: ['a', 'b', 'c'], bus, clock, retry: false, policies: false });
  const watch = withWatch
    ? anomalyWatch({ bus, clock, interval: 1_000, actions: { eject: { failover: api } } })
    : undefined;
  const detections: number[] = [];
  const ejections: { time: number; endpoint: string }[] = [];
  bus.on('anomaly.detected', (e) => {
    if (e.key === 'api/b') detections.push(e.time);
  });
  bus.on('anomaly.action', (e) => {
    if (e.action === 'eject' && e.taken) ejections.push({ time: e.time, endpoint: e.target });
  });
  const upstream = (name: string) =>
    new Promise<string>((resolve, reject) => {
      const now = clock.now();
      const jitter = 1 + 0.2 * random();
      if (name === 'b' && now >= FAIL_AT && now < RECOVER_AT) {
        clock.setTimeout(() => reject(Object.assign(new Error('upstream down'), { code: 'ECONNRESET' })), 5);
        return;
      }
      const creep = name === 'b' && now >= CREEP_AT && now < FAIL_AT ? 1 + (19 * (now - CREEP_AT)) / 30_000 : 1;
      clock.setTimeout(() => resolve(name), 20 * creep * jitter);
    });
  let sent = 0;
  let failed = 0;
  const inflight: Promise<unknown>[] = [];
  for (let t = 0; t < END; t += 50) {
    for (let i = 0; i < 5; i++) {
      sent++;
      inflight.push(
        api
          .execute((endpoint) => breakers[endpoint.name]?.execute(() => upstream(endpoint.name)) as Promise<string>)
          .catch(() => {
            failed++;
          }),
      );
    }
    await clock.advance(50);
  }
  await clock.advance(1_000);
  await Promise.all(inflight);
  watch?.dispose();
  api.dispose();
  for (const b of Object.values(breakers)) b.dispose();
  return { sent, failed, detections, ejections };
}

describe('drill: an endpoint whose latency creeps up for 30 s before it fails', () => {
  it('with the watch and early ejection on, fewer requests fail than with breaker and ejection alone', async () => {
    const alone = await drill(false);
    const watched = await drill(true);
    const firstDetection = watched.detections[0];
    const firstEjection = watched.ejections.find((e) => e.endpoint === 'b');
    const lead = firstEjection === undefined ? Number.NaN : (FAIL_AT - firstEjection.time) / 1000;
    console.log(
      `drill: sent ${alone.sent} each; failed: breaker+ejection ${alone.failed}, with anomaly watch ${watched.failed}; ` +
        `first anomaly on b ${firstDetection === undefined ? 'none' : `${(FAIL_AT - firstDetection) / 1000} s`} before the failures, ` +
        `ejected ${Number.isNaN(lead) ? 'never' : `${lead} s`} before; ejections ${JSON.stringify(watched.ejections)}`,
    );
    expect(alone.sent).toBe(watched.sent);
    expect(alone.failed).toBeGreaterThan(0);
    expect(firstDetection).toBeGreaterThan(CREEP_AT);
    expect(firstDetection).toBeLessThan(FAIL_AT);
    expect(firstEjection).toBeDefined();
    expect(watched.ejections.every((e) => e.endpoint === 'b')).toBe(true);
    expect(watched.failed).toBeLessThan(alone.failed / 2);
  }, 60_000);
});
