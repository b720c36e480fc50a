import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBus, createPolicyRegistry, healthReport, ManualClock } from '@holdfast/core';
import { type DashboardSnapshot, dashboard } from '@holdfast/dashboard';
import { failover, type RoleReport } from '@holdfast/failover';
import { describe, expect, it } from 'vitest';

// Issue 14: a stale primary is fenced "loudly (event, snapshot, dashboard)". Two servers claim
// primary; the one with the lower token is fenced, and the live page and /snapshot say so.
describe('a fenced stale primary on the dashboard', () => {
  it('shows the fenced endpoint as fenced, beside the real primary and a replica', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const clock = new ManualClock();
    const reports: Record<string, RoleReport> = {
      old: { role: 'primary', token: 1 },
      new: { role: 'primary', token: 2 },
      spare: { role: 'replica', token: 2, lag: 0 },
    };
    const fences: string[] = [];
    bus.on('failover.fence', (e) => fences.push(`${e.endpoint}<${e.primary}`));
    const db = failover({
      name: 'orders-db',
      bus,
      policies,
      clock,
      endpoints: Object.keys(reports).map((name) => ({ name, target: name })),
      roles: { check: async (e) => reports[e.target] as RoleReport, interval: 1_000 },
    });
    await clock.advance(0);
    const written: string[] = [];
    for (let i = 0; i < 5; i++) await db.execute(async (e) => written.push(e.name));
    expect(written).toEqual(['new', 'new', 'new', 'new', 'new']);
    expect(fences).toEqual(['old<new']);

    const dash = dashboard({ bus, policies, path: '/ops', interval: 100 });
    const server = createServer(dash).listen(0, '127.0.0.1');
    await once(server, 'listening');
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const snap = (await (await fetch(`${url}/ops/snapshot`)).json()) as DashboardSnapshot;
      const roles = Object.fromEntries(
        snap.failovers.find((f) => f.name === 'orders-db')?.endpoints.map((e) => [e.name, e.role]) ?? [],
      );
      expect(roles).toEqual({ old: 'fenced', new: 'primary', spare: 'replica' });
      // The page renders a fenced endpoint with its own badge.
      const page = await (await fetch(`${url}/ops`)).text();
      expect(page).toContain("fenced: 'Fenced'");
      expect(healthReport({ policies }).checks.find((c) => c.name === 'orders-db')).toBeDefined();
    } finally {
      dash.close();
      server.closeAllConnections();
      server.close();
      db.dispose();
    }
  });
});
