/**
 * Properties of the fault proxy, review: its toxic registry against a model (any sequence of add,
 * re-add under a name, remove, a handle's remove, clear, freeze, restore: the snapshot lists what
 * the model holds; a handle undoes its own add, putting back the toxic it replaced if still live,
 * and the bus has announced each toxic on once and off once); and a limit or drop toxic's exact
 * byte accounting over chunks of any size.
 */
import { once } from 'node:events';
import { createBus, type HoldfastEvent } from '@holdfast/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { faultProxy, type Toxic, type ToxicHandle } from '../src/index.js';
import { client, listen, proxyTo, tick } from './support/review.js';

const names = fc.constantFrom('a', 'b', 'freeze', undefined);
const direction = fc.constantFrom('upstream' as const, 'downstream' as const, 'both' as const, undefined);
const toxic: fc.Arbitrary<Toxic> = fc.oneof(
  fc.record({ type: fc.constant('latency' as const), latency: fc.nat(50), name: names, direction }),
  fc.record({
    type: fc.constant('bandwidth' as const),
    rate: fc.integer({ min: 1, max: 1e6 }),
    name: names,
    direction,
  }),
  fc.record({ type: fc.constant('blackhole' as const), name: names, direction }),
  fc.record({ type: fc.constant('slicer' as const), size: fc.integer({ min: 1, max: 100 }), name: names, direction }),
  fc.record({ type: fc.constant('limit' as const), bytes: fc.nat(1000), name: names, direction }),
  fc.record({ type: fc.constant('drop' as const), chunks: fc.integer({ min: 1, max: 3 }), name: names, direction }),
  fc.record({ type: fc.constant('reset' as const), after: fc.integer({ min: 1_000, max: 5_000 }), name: names }),
);
type Command =
  | { kind: 'add'; toxic: Toxic }
  | { kind: 'remove'; name: string }
  | { kind: 'handle'; which: number }
  | { kind: 'clear' }
  | { kind: 'freeze' }
  | { kind: 'restore' };
const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('add' as const), toxic }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('remove' as const),
      name: fc.constantFrom('a', 'b', 'freeze', 'latency-1'),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('handle' as const), which: fc.nat(20) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('clear' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('freeze' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('restore' as const) }) },
);

describe('faultProxy review: properties', () => {
  it('the toxic registry follows a model, and every toxic announced on is announced off by close()', async () => {
    const port = await listen(() => {});
    await fc.assert(
      fc.asyncProperty(fc.array(command, { maxLength: 40 }), async (commands) => {
        const bus = createBus();
        const events: HoldfastEvent[] = [];
        bus.on('chaos.toxic', (e) => events.push(e));
        const p = await faultProxy({ target: { port }, bus });
        type Shown = { name: string; type: string; direction: string };
        /** Each add: what it showed, the one on under its name it replaced, whether its handle ran. */
        type Entry = { shown: Shown; under: Entry | undefined; removed: boolean };
        const model = new Map<string, Entry>();
        const handles: [ToxicHandle, Entry][] = [];
        let counter = 0;
        try {
          for (const c of commands) {
            if (c.kind === 'add' || c.kind === 'freeze') {
              const t: Toxic = c.kind === 'add' ? c.toxic : { type: 'blackhole', name: 'freeze' };
              const name = t.name ?? `${t.type}-${++counter}`;
              const h = c.kind === 'add' ? p.add(t) : p.freeze();
              expect(h.name).toBe(name);
              const dir = t.direction ?? (t.type === 'blackhole' || t.type === 'reset' ? 'both' : 'downstream');
              const entry: Entry = {
                shown: { name, type: t.type, direction: dir },
                under: model.get(name),
                removed: false,
              };
              handles.push([h, entry]);
              model.delete(name);
              model.set(name, entry);
            } else if (c.kind === 'remove') {
              expect(p.remove(c.name)).toBe(model.delete(c.name));
            } else if (c.kind === 'handle') {
              const picked = handles[c.which];
              if (picked !== undefined) {
                const [h, entry] = picked;
                h.remove();
                entry.removed = true;
                // Its own toxic off (a later one of its name stays), the live one it replaced back.
                if (model.get(h.name) === entry) {
                  model.delete(h.name);
                  let back = entry.under;
                  while (back?.removed) back = back.under;
                  if (back !== undefined) model.set(h.name, back);
                }
              }
            } else if (c.kind === 'clear') {
              p.clear();
              model.clear();
            } else {
              await p.restore();
              model.clear();
            }
            expect(p.snapshot().toxics).toEqual([...model.values()].map((e) => e.shown));
          }
        } finally {
          await p.close();
        }
        // Balanced per name: on, off, on, off...; nothing on once closed.
        const on = new Map<string, boolean>();
        for (const e of events as (HoldfastEvent & { name: string; active: boolean })[]) {
          expect(on.get(e.name) ?? false, `${e.name} announced ${e.active ? 'on' : 'off'} twice`).toBe(!e.active);
          on.set(e.name, e.active);
        }
        expect([...on].filter(([, active]) => active)).toEqual([]);
      }),
      { numRuns: 150 },
    );
  }, 60_000);

  const chunks = fc.array(fc.integer({ min: 1, max: 3_000 }), { minLength: 1, maxLength: 8 });

  it('limit: the client gets exactly the first min(bytes, sent) bytes, and the connection closes iff bytes <= sent', async () => {
    await fc.assert(
      fc.asyncProperty(chunks, fc.nat(10_000), fc.boolean(), fc.nat(), async (sizes, any, atBoundary, pick) => {
        // Half the time the limit falls exactly where a chunk ends: no chunk past it need come.
        const ends = sizes.map((_, i) => sizes.slice(0, i + 1).reduce((a, b) => a + b, 0));
        const limit = atBoundary ? (ends[pick % ends.length] as number) : any;
        const data = Buffer.alloc(sizes.reduce((a, b) => a + b, 0));
        for (let i = 0; i < data.length; i++) data[i] = (i * 17 + (i >> 7)) & 0xff;
        const port = await listen(async (s) => {
          let at = 0;
          for (const size of sizes) {
            s.write(data.subarray(at, (at += size)));
            await tick(1);
          }
        });
        const p = await proxyTo(port);
        p.add({ type: 'limit', bytes: limit });
        const c = client(p);
        const got: Buffer[] = [];
        c.on('data', (b: Buffer) => got.push(b));
        const closed = once(c, 'close').then(() => true);
        const want = Math.min(limit, data.length);
        const shouldClose = limit <= data.length;
        if (shouldClose) expect(await Promise.race([closed, tick(5_000).then(() => false)]), 'closed').toBe(true);
        else {
          // Everything through the proxy, and a moment for a wrong close to show.
          while (Buffer.concat(got).length < want) await tick(2);
          await tick(20);
          expect(c.destroyed, 'closed before its limit').toBe(false);
        }
        expect(Buffer.concat(got).equals(data.subarray(0, want))).toBe(true);
      }),
      { numRuns: 40 },
    );
  }, 120_000);

  it('drop bytes: the client gets every byte after the first `bytes`, none twice, in order', async () => {
    await fc.assert(
      fc.asyncProperty(chunks, fc.integer({ min: 1, max: 10_000 }), async (sizes, drop) => {
        const data = Buffer.alloc(sizes.reduce((a, b) => a + b, 0));
        for (let i = 0; i < data.length; i++) data[i] = (i * 29 + (i >> 9)) & 0xff;
        const port = await listen(async (s) => {
          let at = 0;
          for (const size of sizes) {
            s.write(data.subarray(at, (at += size)));
            await tick(1);
          }
          s.end();
        });
        const p = await proxyTo(port);
        p.add({ type: 'drop', bytes: drop });
        const c = client(p);
        const got: Buffer[] = [];
        c.on('data', (b: Buffer) => got.push(b));
        await once(c, 'end');
        expect(Buffer.concat(got).equals(data.subarray(Math.min(drop, data.length)))).toBe(true);
      }),
      { numRuns: 40 },
    );
  }, 120_000);
});
