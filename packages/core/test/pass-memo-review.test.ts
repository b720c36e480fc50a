/**
 * healthReport() hides each name once per registry (PassMemo): a policy registered under a name
 * that is no string (plain JavaScript, a registry of the user's own) is reported as before, its
 * name as given, never a report that throws (a 503 on /health for every instance running it).
 */
import { describe, expect, it } from 'vitest';
import { createPolicyRegistry, healthReport, PassMemo } from '../src/index.js';

const closed = { snapshot: () => ({ state: 'closed' }) };

describe('PassMemo', () => {
  it.each([undefined, null, 42])('healthReport() reads a policy registered under the name %s', (name) => {
    const policies = createPolicyRegistry();
    policies.register('breaker', name as never, closed);
    policies.register('breaker', 'https://app:pw@db.example/', closed);
    const first = healthReport({ policies });
    expect(first.checks.map((c) => c.name)).toEqual([name, 'https://***@db.example/']);
    expect(healthReport({ policies }).checks).toEqual(first.checks);
  });

  it('keeps no text that is not a string, and works each out again', () => {
    let worked = 0;
    const memo = new PassMemo((text) => {
      worked++;
      return text;
    });
    for (let i = 0; i < 2; i++) memo.pass(() => [memo.get(undefined as never), memo.get('a')]);
    expect(worked).toBe(3);
  });
});
