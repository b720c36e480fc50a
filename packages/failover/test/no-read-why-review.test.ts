/**
 * Review of the reasons E_NO_HEALTHY_ENDPOINT gives for a read under `maxLag` (no-read-why.test.ts):
 * each must say why that endpoint took no read, and carry no secret.
 */

import { expect, it } from 'vitest';
import { failover, type RoleReport } from '../src/index.js';
import { harness } from './support.js';

/** A set over a primary `d` whose health checks fail, two replicas past maxLag, one unreachable. */
function set(panic: 'all' | 'fail-fast') {
  const { clock, bus } = harness();
  const reports: Record<string, RoleReport | 'down'> = {
    'postgres://app:hunter2@a/db': 'down',
    'https://b/db?api_key=sekret': { role: 'replica', token: [1, 0n], lag: 2_500 },
    c: { role: 'replica', token: [1, 0n], lag: 1_500 },
    d: { role: 'primary', token: [1, 0n] },
  };
  // A client whose error code is a message with a credential in it (some drivers' codes are free text).
  const check = async (e: { target: string }) => {
    const r = reports[e.target];
    if (r === 'down') throw Object.assign(new Error('no'), { code: 'auth failed: password=hunter2' });
    return r as RoleReport;
  };
  const db = failover<string>({
    clock,
    bus,
    panic,
    endpoints: Object.keys(reports).map((name) => ({ name, target: name })),
    roles: { check, interval: 1_000, maxLag: 1_000 },
    health: {
      check: async (e) => {
        if (e.target === 'd') throw new Error('unhealthy');
      },
      interval: 1_000,
      unhealthyAfter: 1,
    },
    policies: false,
    retry: false,
  });
  return { clock, db };
}

it("a read refused names why each endpoint took none: the primary's health too, and no credential in a check's error code", async () => {
  const { clock, db } = set('fail-fast');
  try {
    await clock.advance(3_000);
    const error = (await db.execute((e) => e.name, { intent: 'read' }).catch((e: Error) => e)) as Error;
    expect(error.message).not.toMatch(/hunter2|sekret/);
    expect(error.message).toBe(
      'failover: no healthy endpoint can take the call (3 of 4 available; none may take a read: ' +
        'postgres://***@a/db: unreachable (auth failed: password=***); ' +
        'https://b/db?api_key=***: replica, lag 2500 ms over maxLag 1000 ms; ' +
        'c: replica, lag 1500 ms over maxLag 1000 ms; d: primary, unhealthy)',
    );
  } finally {
    db.dispose();
  }
});

it("a write refused (no primary available) carries no credential from a check's error code either", async () => {
  const { clock, db } = set('fail-fast');
  try {
    await clock.advance(3_000);
    const error = (await db.execute((e) => e.name).catch((e: Error) => e)) as Error;
    expect(error.message).toContain('postgres://***@a/db: unreachable');
    expect(error.message).not.toMatch(/hunter2|sekret/);
  } finally {
    db.dispose();
  }
});
