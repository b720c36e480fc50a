/**
 * A registered snapshot whose fields throw when read (a user's class with a getter on a pool or
 * connection closed meanwhile) is "a snapshot that throws": a `warn` with its error's code, never
 * a thrown healthReport(), an instance taken out of rotation, or a dashboard that shows nothing
 * of the other policies. (The exporters read snapshots as plain JSON first since 61b7b19.)
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBus, createPolicyRegistry, healthReport, type JsonValue, type PolicyRegistry } from '@holdfast/core';
import { dashboard, healthHandler } from '@holdfast/dashboard';
import { afterEach, describe, expect, it } from 'vitest';

/** What a class whose getter reads a closed connection returns from snapshot(). */
const closed = (): JsonValue => {
  const fail = (): never => {
    throw Object.assign(new Error('connection to redis://app:Zq9hunter2@cache.internal/ closed'), {
      code: 'ECLOSED',
    });
  };
  return {
    get state() {
      return fail();
    },
    get endpoints() {
      return fail();
    },
    get balance() {
      return fail();
    },
    get status() {
      return fail();
    },
    get limit() {
      return fail();
    },
  } as unknown as JsonValue;
};

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

async function serve(handler: Parameters<typeof createServer>[1]): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A good open breaker registered first, then a policy of `kind` whose snapshot's fields throw. */
function registry(kind: string): { policies: PolicyRegistry; held: unknown[] } {
  const policies = createPolicyRegistry();
  const good = { snapshot: (): JsonValue => ({ state: 'closed' }) };
  const bad = { snapshot: closed };
  policies.register('breaker', 'good', good);
  policies.register(kind, 'bad', bad);
  return { policies, held: [good, bad] };
}

describe.each(['breaker', 'failover', 'budget', 'queue', 'concurrency'])(
  'a %s whose snapshot throws when read',
  (kind) => {
    it('healthReport() warns on it with its code and stays ready', () => {
      const { policies, held } = registry(kind);
      const report = healthReport({ policies });
      expect(report.ready).toBe(true);
      expect(report.checks.map((c) => [c.name, c.status])).toEqual([
        ['good', 'pass'],
        ['bad', 'warn'],
      ]);
      expect(JSON.stringify(report)).not.toContain('Zq9hunter2');
      expect(held).toHaveLength(2);
    });

    it('/health answers 200, and the dashboard snapshot still lists the good breaker', async () => {
      const { policies, held } = registry(kind);
      const health = healthHandler({ policies });
      const dash = dashboard({ bus: createBus(), policies });
      try {
        const base = await serve((req, res) => (req.url === '/health' ? health(req, res) : dash(req, res)));
        const h = await fetch(`${base}/health`);
        const text = await h.text();
        expect([h.status, text.includes('Zq9hunter2')]).toEqual([200, false]);
        const snap = await fetch(`${base}/holdfast/snapshot`);
        const body = await snap.text();
        expect(body).not.toContain('Zq9hunter2');
        const json = JSON.parse(body) as { error?: string; breakers?: { name: string }[]; health?: { ready: boolean } };
        expect([json.error, json.breakers?.map((b) => b.name), json.health?.ready]).toEqual([
          undefined,
          ['good'],
          true,
        ]);
        expect(held).toHaveLength(2);
      } finally {
        dash.close();
      }
    });
  },
);
