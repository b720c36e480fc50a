import { createBus } from '@holdfast/core';
import { failover } from '@holdfast/failover';
// The pick itself is internal to the set: measure it from the package's source.
import { makeBalancer } from '../packages/failover/src/balancer.js';
import { EndpointState } from '../packages/failover/src/endpoint.js';
import { hashString } from '../packages/failover/src/hash.js';
import { compare, printRows, type Row } from './harness.js';

const balancers = ['round-robin', 'least-connections', 'consistent-hash', 'p2c-ewma'] as const;

function endpoints(n: number, weighted: boolean): EndpointState[] {
  return Array.from({ length: n }, (_, i) => {
    const name = `endpoint-${i}`;
    const weight = weighted ? 1 + (i % 3) : 1;
    const e = new EndpointState({ name, target: name, weight, priority: 0 }, i, hashString(name));
    e.ewma = 5 + (i % 7);
    return e;
  });
}

/** The cost of one endpoint pick, per balancer, with 3 and with 100 endpoints; then of a whole call. */
export async function benchFailover(): Promise<void> {
  const byCount: Record<number, Row[]> = {};
  for (const n of [3, 100]) {
    const list = endpoints(n, false);
    const weighted = endpoints(n, true);
    const keys = Array.from({ length: 1024 }, (_, i) => `user-${i}`);
    let k = 0;
    byCount[n] = await compare({
      title: `failover: one endpoint pick, ${n} endpoints`,
      baseline: 'bare call',
      variants: [
        { name: 'bare call', call: () => list[k++ % n] },
        ...balancers.map((name) => {
          const balancer = makeBalancer(name, { random: Math.random, decay: 10_000 });
          return { name, call: () => balancer.pick(list, keys[k++ & 1023], 1_000) };
        }),
        ...(['round-robin', 'consistent-hash'] as const).map((name) => {
          const balancer = makeBalancer(name, { random: Math.random, decay: 10_000 });
          return { name: `${name}, weighted`, call: () => balancer.pick(weighted, keys[k++ & 1023], 1_000) };
        }),
      ],
    });
  }
  const names = (byCount[3] ?? []).filter((r) => r.name !== 'bare call').map((r) => r.name);
  const ns = (n: number, name: string) => byCount[n]?.find((r) => r.name === name)?.nsPerCall ?? Number.NaN;
  printRows(
    'failover: a pick with 100 endpoints against one with 3 (goal for consistent-hash: ≤ 1.3×)',
    ['balancer', '3 endpoints', '100 endpoints', '100 / 3', 'goal'],
    names.map((name) => {
      const ratio = ns(100, name) / ns(3, name);
      const goal = name.startsWith('consistent-hash') ? (ratio <= 1.3 ? 'met' : 'MISSED') : '';
      return [name, `${ns(3, name).toFixed(0)} ns`, `${ns(100, name).toFixed(0)} ns`, `${ratio.toFixed(2)}×`, goal];
    }),
  );
  console.log('(per call, the harness awaiting each pick included: the bare call row is that cost)');
  const bus = createBus();
  const sets = Object.fromEntries(
    balancers.map((balancer) => [balancer, failover({ bus, balancer, endpoints: ['a', 'b', 'c'] })]),
  );
  const passive = failover({
    bus,
    mode: 'active-passive',
    endpoints: [
      { name: 'p', target: 'p', priority: 0 },
      { name: 's', target: 's', priority: 1 },
    ],
  });
  const op = async () => 1;
  await compare({
    title: 'failover: a whole successful call through execute(), 3 endpoints',
    baseline: 'bare call',
    variants: [
      { name: 'bare call', call: op },
      ...balancers.map((name) => ({
        name: `execute, ${name}`,
        call: () => sets[name]?.execute(op, { key: 'user-1' }),
      })),
      { name: 'execute, active-passive', call: () => passive.execute(op) },
    ],
  });
  for (const set of [...Object.values(sets), passive]) set?.dispose();
}
