/**
 * A read no endpoint may take under `roles.maxLag`: the error said only `no healthy endpoint can
 * take the call (2 of 2 available)`, though both answered their checks. It says why now, per
 * endpoint: its role, a replica's lag against maxLag (or unknown), why its checks fail.
 */

import { expect, it } from 'vitest';
import { failover, type RoleReport } from '../src/index.js';
import { harness } from './support.js';

it('a read refused under maxLag names each endpoint, its role and its lag against maxLag, and no secret', async () => {
  const { clock, bus } = harness();
  const reports: Record<string, RoleReport | 'down'> = {
    a: 'down',
    b: { role: 'replica', token: [1, 0n], lag: 2_500 },
    c: { role: 'replica', token: [1, 0n] },
    d: { role: 'replica', token: [1, 0n], lag: Number.POSITIVE_INFINITY },
  };
  const check = async (e: { name: string }) => {
    const r = reports[e.name];
    if (r === 'down')
      throw Object.assign(new Error('password authentication failed for user "app" password=hunter2'), {
        code: 'ECONNREFUSED',
      });
    return r as RoleReport;
  };
  const db = failover({
    clock,
    bus,
    endpoints: ['a', 'b', 'c', 'd'].map((name) => ({ name, target: `postgres://app:hunter2@${name}/db` })),
    roles: { check, interval: 1_000, maxLag: 1_000 },
    policies: false,
    retry: false,
  });
  try {
    await clock.advance(3_000);
    const error = await db.execute((e) => e.name, { intent: 'read' }).catch((e: Error & { code: string }) => e);
    expect((error as { code: string }).code).toBe('E_NO_HEALTHY_ENDPOINT');
    expect((error as Error).message).toBe(
      'failover: no healthy endpoint can take the call (4 of 4 available; none may take a read: ' +
        'a: unreachable (ECONNREFUSED); b: replica, lag 2500 ms over maxLag 1000 ms; c: replica, lag unknown; ' +
        'd: replica, never synced)',
    );
  } finally {
    db.dispose();
  }
});

it('a set without roles whose endpoints are all down says how many are available, and nothing of reads', async () => {
  const { clock, bus } = harness();
  const db = failover({
    clock,
    bus,
    endpoints: ['a', 'b'].map((name) => ({ name, target: name })),
    health: { check: async () => Promise.reject(new Error('down')), interval: 1_000, unhealthyAfter: 1 },
    panicThreshold: 0,
    policies: false,
    retry: false,
  });
  try {
    await clock.advance(3_000);
    const error = await db.execute((e) => e.name).catch((e: Error & { code: string }) => e);
    expect((error as { code: string }).code).toBe('E_NO_HEALTHY_ENDPOINT');
    expect((error as Error).message).toBe('failover: no healthy endpoint can take the call (0 of 2 available)');
  } finally {
    db.dispose();
  }
});
