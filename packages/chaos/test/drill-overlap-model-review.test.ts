/**
 * Two drills on one fault proxy, any interleaving of their steps' faults and their ends, against a
 * model: under each name the toxic on is the latest put on that is still live (the user's setup,
 * or a running drill's whose handle has not taken it off); it listens while no running drill's
 * step has refused it (and not accepted since); once both have ended, the user's setup is on.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { faultProxy, type ToxicHandle } from '../src/index.js';
import { FaultScope, faultScope } from '../src/scope.js';
import type { ActiveToxic } from '../src/toxics.js';

let target: Server;
let port: number;
beforeAll(async () => {
  target = createServer((socket) => socket.end());
  target.listen(0, '127.0.0.1');
  await once(target, 'listening');
  port = (target.address() as AddressInfo).port;
});
afterAll(async () => {
  await new Promise((resolve) => target.close(resolve));
});

type Op =
  | { drill: 0 | 1; kind: 'add'; name: 'x' | 'y' }
  | { drill: 0 | 1; kind: 'handle'; which: number }
  | { drill: 0 | 1; kind: 'refuse' | 'accept' | 'end' };

const drillOf = fc.constantFrom(0 as const, 1 as const);
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      drill: drillOf,
      kind: fc.constant('add' as const),
      name: fc.constantFrom('x' as const, 'y' as const),
    }),
  },
  { weight: 3, arbitrary: fc.record({ drill: drillOf, kind: fc.constant('handle' as const), which: fc.nat(6) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      drill: drillOf,
      kind: fc.constantFrom('refuse' as const, 'accept' as const, 'end' as const),
    }),
  },
);

interface Entry {
  readonly id: number;
  readonly owner: 0 | 1 | 'user';
  dead: boolean;
}

it('two drills: each owns exactly its faults, whatever the interleaving', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(op, { maxLength: 30 }), async (ops) => {
      const proxy = await faultProxy({ target: { port } });
      const live = proxy as unknown as { toxicsFor(id: number, way: 'upstream'): ActiveToxic[] };
      const on = () =>
        Object.fromEntries(
          live
            .toxicsFor(0, 'upstream')
            .map((t) => [t.name, (t as ActiveToxic & { latency: number }).latency])
            .sort(),
        );
      let ids = 0;
      const stacks: Record<'x' | 'y', Entry[]> = { x: [], y: [] };
      for (const name of ['x', 'y'] as const) {
        const id = ++ids;
        proxy.add({ type: 'latency', name, latency: id, direction: 'both' });
        stacks[name].push({ id, owner: 'user', dead: false });
      }
      const scopes = [new FaultScope(), new FaultScope()];
      const handles: [ToxicHandle, Entry, 'x' | 'y'][][] = [[], []];
      const refusing = [false, false];
      const ended = [false, false];
      const expected = () => {
        const out: Record<string, number> = {};
        for (const name of ['x', 'y'] as const) {
          const top = stacks[name].findLast((e) => !e.dead);
          if (top !== undefined) out[name] = top.id;
        }
        return out;
      };
      try {
        for (const o of ops) {
          const d = o.drill;
          const scope = scopes[d] as FaultScope;
          if (o.kind === 'end') {
            await scope.restore();
            if (!ended[d])
              for (const name of ['x', 'y'] as const) for (const e of stacks[name]) if (e.owner === d) e.dead = true;
            ended[d] = true;
            refusing[d] = false;
          } else if (ended[d]) {
            continue; // a step's continuation after its drill ended puts on nothing: not modelled
          } else if (o.kind === 'add') {
            const id = ++ids;
            const h = faultScope.run(scope, () =>
              proxy.add({ type: 'latency', name: o.name, latency: id, direction: 'both' }),
            );
            const entry = { id, owner: d, dead: false } as Entry;
            stacks[o.name].push(entry);
            handles[d]?.push([h, entry, o.name]);
          } else if (o.kind === 'handle') {
            const picked = handles[d]?.[o.which];
            if (picked === undefined) continue;
            const [h, entry, name] = picked;
            faultScope.run(scope, () => h.remove());
            // Its own off; and the one on under its name, unless another running drill's.
            const top = stacks[name].findLast((e) => !e.dead);
            entry.dead = true;
            if (top !== undefined && (top.owner === d || top.owner === 'user' || ended[top.owner])) top.dead = true;
          } else if (o.kind === 'refuse') {
            await faultScope.run(scope, () => proxy.refuse());
            refusing[d] = true;
          } else {
            await faultScope.run(scope, () => proxy.accept());
            refusing[d] = false;
          }
          expect(on()).toEqual(expected());
          expect(proxy.snapshot().listening).toBe(!refusing[0] && !refusing[1]);
        }
        await scopes[0]?.restore();
        await scopes[1]?.restore();
        // Both ended: the user's setup, as it was.
        const user = Object.fromEntries(
          (['x', 'y'] as const).flatMap((name) => {
            const first = stacks[name][0] as Entry;
            return first.dead ? [] : [[name, first.id]];
          }),
        );
        expect(on()).toEqual(user);
        expect(proxy.snapshot().listening).toBe(true);
      } finally {
        await proxy.close();
      }
    }),
    { numRuns: 200 },
  );
}, 60_000);
