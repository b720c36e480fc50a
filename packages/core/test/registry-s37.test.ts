import { describe, expect, it } from 'vitest';
import { createPolicyRegistry, healthReport, hideCredentials, hideSecrets, type SnapshotSource } from '../src/index.js';

describe('policies.snapshots(), a snapshot() that returns a promise', () => {
  it('is an error entry saying snapshot() must be synchronous, and its rejection is handled', async () => {
    const policies = createPolicyRegistry();
    let unhandled = 0;
    const count = () => unhandled++;
    process.on('unhandledRejection', count);
    try {
      const pool = {
        snapshot: async () => {
          throw new Error('connect postgres://app:hunter2@db');
        },
      };
      policies.register('pool', 'db', pool as unknown as SnapshotSource);
      const [entry] = policies.snapshots();
      expect(entry).toEqual({
        kind: 'pool',
        name: 'db',
        snapshot: null,
        error: 'snapshot() must be synchronous: it returned a promise',
      });
      await new Promise((r) => setTimeout(r, 20));
      expect(unhandled).toBe(0);
      expect(pool).toBeDefined(); // held until here: the registry holds it weakly
    } finally {
      process.off('unhandledRejection', count);
    }
  });

  it('is a warn in healthReport(), never a pass', () => {
    const policies = createPolicyRegistry();
    const queue = { snapshot: async () => ({ healthy: true }) };
    policies.register('queue', 'jobs', queue as unknown as SnapshotSource);
    const [check] = healthReport({ policies }).checks;
    expect(check).toMatchObject({ status: 'warn', reason: expect.stringMatching(/must be synchronous/) });
    expect(queue).toBeDefined();
  });

  it('a thenable that is no native promise is an error entry, its then() never called (a lazy query runs only then)', () => {
    const policies = createPolicyRegistry();
    let called = 0;
    const thenable = Object.defineProperty({}, 'then', {
      value: () => {
        called++;
        throw new TypeError('no');
      },
    });
    const odd = { snapshot: () => thenable };
    policies.register('odd', 'x', odd as unknown as SnapshotSource);
    expect(policies.snapshots()[0]).toMatchObject({ snapshot: null, error: expect.stringMatching(/synchronous/) });
    expect(called).toBe(0);
    expect(odd).toBeDefined();
  });
});

describe('policies.onUnregister(), per name or per kind', () => {
  it('with perKind, tells of a breaker that leaves while a failover set of its name stays', () => {
    const policies = createPolicyRegistry();
    const perKind: string[] = [];
    const perName: string[] = [];
    policies.onUnregister((kind, name) => perKind.push(`${kind} ${name}`), { perKind: true });
    policies.onUnregister((kind, name) => perName.push(`${kind} ${name}`));
    const breaker = { snapshot: () => ({ state: 'open' }) };
    const set = { snapshot: () => ({ endpoints: [] }) };
    const offBreaker = policies.register('breaker', 'orders-db', breaker);
    const offSet = policies.register('failover', 'orders-db', set);
    offBreaker();
    expect(perKind).toEqual(['breaker orders-db']);
    // Without it, as before: the name stays (metrics keep its series), so nothing is told yet.
    expect(perName).toEqual([]);
    offSet();
    expect(perKind).toEqual(['breaker orders-db', 'failover orders-db']);
    expect(perName).toEqual(['failover orders-db']);
  });

  it('waits for the last of two policies of one kind and name, either way', () => {
    const policies = createPolicyRegistry();
    const told: string[] = [];
    policies.onUnregister((kind, name) => told.push(`perKind ${kind} ${name}`), { perKind: true });
    policies.onUnregister((kind, name) => told.push(`${kind} ${name}`));
    const a = { snapshot: () => ({ state: 'closed' }) };
    const b = { snapshot: () => ({ state: 'open' }) };
    const offA = policies.register('breaker', 'payments', a);
    const offB = policies.register('breaker', 'payments', b);
    offA();
    expect(told).toEqual([]);
    offB();
    offB();
    expect(told).toEqual(['perKind breaker payments', 'breaker payments']);
  });

  it('one listener subscribed twice is taken off once per unsubscribe', () => {
    const policies = createPolicyRegistry();
    const told: string[] = [];
    const listener = (kind: string, name: string) => told.push(`${kind} ${name}`);
    const off = policies.onUnregister(listener);
    policies.onUnregister(listener, { perKind: true });
    off();
    policies.register('budget', 'shared', { snapshot: () => ({ balance: 1 }) })();
    expect(told).toEqual(['budget shared']);
  });
});

describe('healthReport(), secrets in reasons', () => {
  it('hides each split-brain endpoint apart, and a breaker state a user policy reports', () => {
    const policies = createPolicyRegistry();
    const set = {
      snapshot: () => ({
        splitBrain: {
          endpoints: ['postgres://app:hunter2@db-a/orders', 'postgres://app:hunter2@db-b/orders'],
          since: 1,
        },
        endpoints: [
          { name: 'postgres://app:hunter2@db-a/orders', available: true },
          { name: 'postgres://app:hunter2@db-b/orders', available: true },
        ],
      }),
    };
    const breaker = { snapshot: () => ({ state: 'draining password=hunter2' }) };
    policies.register('failover', 'orders', set);
    policies.register('breaker', 'odd', breaker);
    const reasons = healthReport({ policies }).checks.map((c) => c.reason);
    expect(reasons).toEqual([
      'split brain: postgres://***@db-a/orders, postgres://***@db-b/orders tie, no writes',
      'draining password=***',
    ]);
    expect(set && breaker).toBeDefined();
  });
});

describe('hideCredentials(), HTTP authentication schemes', () => {
  it.each([
    ['Basic YXBwOmh1bnRlcjI=', 'Basic ***'],
    ['authorization: basic dXNlcjpwYXNz', 'authorization: basic ***'],
    ['curl -H "Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="', 'curl -H "Authorization: Basic ***"'],
    [
      'Digest username="app", realm="api", nonce="dcd98b", uri="/x", response="6629fae49393a05397450978507c4ef1"',
      'Digest ***',
    ],
    ['Negotiate YIIGhgYGKwYBBQUCoIIGejCCBnagMDAuBgkqhkiC', 'Negotiate ***'],
    ['NTLM TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAGAbEdAAAADw==', 'NTLM ***'],
    ['Bearer tok-hunter2', 'Bearer ***'],
  ])('hides %s', (text, shown) => {
    expect(hideCredentials(text)).toBe(shown);
    expect(hideSecrets(text)).toBe(shown);
    expect(hideCredentials(shown)).toBe(shown);
  });

  it.each([
    'basic auth failed',
    'Basic authentication is off',
    'failed to negotiate TLS',
    'a digest of the changes',
    'Basic realm="api"',
  ])('leaves "%s" as it is', (text) => {
    expect(hideSecrets(text)).toBe(text);
  });
});
