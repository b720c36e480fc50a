/**
 * Past `maxPolicies`, policies share the `_other` label. A gauge read from their snapshots must
 * then say something of all of them, as OpenTelemetry's own overflow series does for sums (the
 * total stays right), not the value of whichever policy happened to be read last.
 */
import { failover } from '@holdfast/failover';
import { metricNames as M } from '@holdfast/otel';
import { describe, expect, it } from 'vitest';
import { collectPoints } from '../packages/otel/test/collect.js';

const POLICY = 'holdfast.policy.name';

/** Instrumented with one policy label of its own: every policy after the first is `_other`. */
const setup = () => collectPoints({ maxPolicies: 1 });

describe('otel: gauges of the `_other` series', () => {
  it('retry budgets past maxPolicies: `_other` is the balance of all of them, whatever order they are read in', async () => {
    const { policies, points, close } = setup();
    const sources = [
      ['own', 7],
      ['b1', 10],
      ['b2', 20],
      ['b3', 0],
    ] as const;
    const held = sources.map(([name, balance]) => {
      const source = { snapshot: () => ({ balance }) };
      policies.register('budget', name, source);
      return source;
    });
    const balances = await points(M.retryBudgetBalance);
    expect(balances.find((p) => p.attributes[POLICY] === 'own')?.value).toBe(7);
    expect(balances.find((p) => p.attributes[POLICY] === '_other')?.value).toBe(30);
    expect(held).toHaveLength(4);
    await close();
  });

  it('failover sets past maxPolicies: `_other` counts the endpoints of that name that are up', async () => {
    const { bus, policies, points, close } = setup();
    const sets = ['own', 'f1', 'f2', 'f3'].map((name) => failover({ name, endpoints: ['a', 'b'], bus, policies }));
    // A first collection gives `own` the one label of its own (the sets are read in order).
    await points(M.failoverEndpointUp);
    // f1 and f2 have `a` ejected; f3's `a` is up (and is read last).
    for (const set of sets.slice(1, 3)) expect(set.eject('a', { durationMs: 60_000 })).toBe(true);
    const up = await points(M.failoverEndpointUp);
    const other = (endpoint: string) =>
      up.find((p) => p.attributes[POLICY] === '_other' && p.attributes['holdfast.endpoint.name'] === endpoint)?.value;
    expect(other('a')).toBe(1);
    expect(other('b')).toBe(3);
    for (const set of sets) set.dispose();
    await close();
  });
});
