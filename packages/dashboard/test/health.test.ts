import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import {
  createBus,
  createPolicyRegistry,
  healthReport,
  type JsonValue,
  ManualClock,
  policies,
  registerSnapshot,
  snapshots,
} from '@holdfast/core';
import express from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { healthHandler, toFastify } from '../src/index.js';
import { FakeBreaker, FakeBudget, FakeFailover } from './fakes.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

describe('the policy registry', () => {
  it('lists registered snapshots by kind, in order, until unregistered', () => {
    const registry = createPolicyRegistry();
    const a = { snapshot: (): JsonValue => ({ state: 'closed' }) };
    const b = { snapshot: (): JsonValue => ({ balance: 3 }) };
    const offA = registry.register('breaker', 'a', a);
    registry.register('budget', 'b', b);
    expect(registry.snapshots().map((s) => `${s.kind}:${s.name}`)).toEqual(['breaker:a', 'budget:b']);
    expect(registry.snapshots('budget')).toEqual([{ kind: 'budget', name: 'b', snapshot: { balance: 3 } }]);
    offA();
    offA();
    expect(registry.snapshots().map((s) => s.name)).toEqual(['b']);
    expect(registry.size).toBe(1);
  });

  it('holds policies weakly: a policy nobody else holds leaves the list once collected', async () => {
    const registry = createPolicyRegistry();
    const kept = { snapshot: (): JsonValue => 'kept' };
    registry.register('breaker', 'kept', kept);
    (() => {
      registry.register('breaker', 'dropped', { snapshot: (): JsonValue => 'dropped' });
    })();
    for (let i = 0; i < 5 && registry.size > 1; i++) {
      await new Promise((r) => setImmediate(r));
      gc();
    }
    expect(registry.snapshots().map((s) => s.name)).toEqual(['kept']);
  });

  it('reports a snapshot that throws as an error entry (its code or name, never its message), without hiding the others', () => {
    const registry = createPolicyRegistry();
    registry.register('breaker', 'broken', {
      snapshot: () => {
        throw new Error('redis://default:hunter2@cache:6379 unreachable');
      },
    });
    registry.register('cache', 'coded', {
      snapshot: () => {
        throw Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:6379 (user:pw)'), { code: 'ECONNREFUSED' });
      },
    });
    registry.register('queue', 'odd', {
      snapshot: () => {
        throw 'a string with a secret in it';
      },
    });
    registry.register('breaker', 'fine', { snapshot: (): JsonValue => ({ state: 'closed' }) });
    expect(registry.snapshots()).toEqual([
      { kind: 'breaker', name: 'broken', snapshot: null, error: 'Error' },
      { kind: 'cache', name: 'coded', snapshot: null, error: 'ECONNREFUSED' },
      { kind: 'queue', name: 'odd', snapshot: null, error: 'string' },
      { kind: 'breaker', name: 'fine', snapshot: { state: 'closed' } },
    ]);
    expect(healthReport({ policies: registry }).checks.map((c) => c.reason)).toEqual([
      'snapshot failed: Error',
      'snapshot failed: ECONNREFUSED',
      'snapshot failed: string',
      'closed',
    ]);
    expect(() => registry.register('breaker', 'x', {} as never)).toThrow(/snapshot\(\) method/);
  });

  it('registerSnapshot() and snapshots() use the process-wide registry', () => {
    const source = { snapshot: (): JsonValue => ({ state: 'open' }) };
    const off = registerSnapshot('breaker', 'global-one', source);
    expect(snapshots('breaker').some((s) => s.name === 'global-one')).toBe(true);
    expect(policies.snapshots().some((s) => s.name === 'global-one')).toBe(true);
    off();
    expect(snapshots().some((s) => s.name === 'global-one')).toBe(false);
  });
});

describe('healthReport()', () => {
  const bus = createBus();
  const clock = new ManualClock(1_000);

  it('is ready with nothing registered', () => {
    expect(healthReport({ policies: createPolicyRegistry(), clock })).toEqual({
      status: 'pass',
      ready: true,
      time: 1_000,
      checks: [],
    });
  });

  it('fails readiness while a breaker is open or isolated, warns while half-open', () => {
    const registry = createPolicyRegistry();
    const breaker = new FakeBreaker('payments', bus, registry);
    expect(healthReport({ policies: registry }).ready).toBe(true);
    breaker.open();
    expect(healthReport({ policies: registry, clock })).toEqual({
      status: 'fail',
      ready: false,
      time: 1_000,
      checks: [{ kind: 'breaker', name: 'payments', status: 'fail', reason: 'open' }],
    });
    breaker.halfOpen();
    expect(healthReport({ policies: registry })).toMatchObject({ status: 'warn', ready: true });
    breaker.state = 'isolated';
    expect(healthReport({ policies: registry }).ready).toBe(false);
    breaker.close();
    expect(healthReport({ policies: registry }).status).toBe('pass');
  });

  it('warns when some endpoints of a failover set are down, fails when none is up; drained ones do not count', () => {
    const registry = createPolicyRegistry();
    const set = new FakeFailover('db', ['primary', 'replica', 'spare'], registry);
    set.set('primary', false);
    expect(healthReport({ policies: registry }).checks).toEqual([
      { kind: 'failover', name: 'db', status: 'warn', reason: '1 of 3 endpoints down' },
    ]);
    set.set('replica', false);
    set.endpoints[2] = { ...(set.endpoints[2] as (typeof set.endpoints)[number]), role: 'drained', available: false };
    expect(healthReport({ policies: registry })).toMatchObject({
      ready: false,
      checks: [{ status: 'fail', reason: 'no endpoint up' }],
    });
    set.set('replica', true);
    expect(healthReport({ policies: registry })).toMatchObject({
      ready: true,
      checks: [{ status: 'warn', reason: '1 of 2 endpoints down' }],
    });
  });

  it('warns when a retry budget is exhausted, without failing readiness', () => {
    const registry = createPolicyRegistry();
    const budget = new FakeBudget('shared', registry);
    budget.balance = 0;
    expect(healthReport({ policies: registry })).toMatchObject({
      status: 'warn',
      ready: true,
      checks: [{ kind: 'budget', name: 'shared', status: 'warn', reason: 'budget exhausted' }],
    });
  });

  it('takes the verdict of other kinds from their status or healthy field, and a broken snapshot only warns', () => {
    const registry = createPolicyRegistry();
    const queue = { snapshot: (): JsonValue => ({ healthy: false, depth: 9000 }) };
    const cache = { snapshot: (): JsonValue => ({ status: 'warn' }) };
    const plain = { snapshot: (): JsonValue => ({ size: 3 }) };
    const broken = {
      snapshot: (): JsonValue => {
        throw new Error('E_DISPOSED');
      },
    };
    registry.register('queue', 'jobs', queue);
    registry.register('cache', 'users', cache);
    registry.register('pool', 'conns', plain);
    registry.register('breaker', 'gone', broken);
    expect(healthReport({ policies: registry }).checks.map((c) => `${c.name}:${c.status}`)).toEqual([
      'jobs:fail',
      'users:warn',
      'conns:pass',
      'gone:warn',
    ]);
  });

  it('lets non-critical checks only warn', () => {
    const registry = createPolicyRegistry();
    new FakeBreaker('recommendations', bus, registry).open();
    const report = healthReport({ policies: registry, critical: (c) => c.name !== 'recommendations' });
    expect(report).toMatchObject({ status: 'warn', ready: true, checks: [{ status: 'warn', reason: 'open' }] });
  });
});

describe('/health handlers', () => {
  const servers: Server[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
  });

  async function listen(server: Server): Promise<string> {
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  function scenario() {
    const registry = createPolicyRegistry();
    const breaker = new FakeBreaker('payments', createBus(), registry);
    return { registry, breaker };
  }

  it('node:http: 200 with the report while ready, 503 while a breaker is open', async () => {
    const { registry, breaker } = scenario();
    const url = await listen(createServer(healthHandler({ policies: registry })));
    let res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(await res.json()).toMatchObject({ status: 'pass', ready: true, checks: [{ name: 'payments' }] });
    breaker.open();
    res = await fetch(url);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ status: 'fail', ready: false, checks: [{ reason: 'open' }] });
  });

  it('Express mounts it as a route', async () => {
    const { registry, breaker } = scenario();
    const app = express();
    app.get('/health', healthHandler({ policies: registry }));
    const url = await listen(createServer(app));
    expect((await fetch(`${url}/health`)).status).toBe(200);
    breaker.open();
    const res = await fetch(`${url}/health`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as { ready: boolean }).ready).toBe(false);
  });

  it('Fastify mounts it with toFastify()', async () => {
    const { registry, breaker } = scenario();
    const app = Fastify();
    app.get('/health', toFastify(healthHandler({ policies: registry })));
    try {
      expect((await app.inject({ url: '/health' })).statusCode).toBe(200);
      breaker.open();
      const res = await app.inject({ url: '/health' });
      expect(res.statusCode).toBe(503);
      expect(res.json()).toMatchObject({ ready: false, checks: [{ kind: 'breaker', status: 'fail' }] });
    } finally {
      await app.close();
    }
  });
});
