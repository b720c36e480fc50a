/**
 * Property (review): whatever sequence of control calls a drill or a test makes on a fault proxy
 * (toxics added under a few names, removed, cleared, a freeze, kill, restore, refuse, accept,
 * resetAll) with clients dialing in between, the proxy's snapshot matches a model after every
 * call, a client is refused exactly when the model says the proxy is not listening, each toxic's
 * `chaos.toxic` events alternate on/off, and after close() nothing is on, listening or open.
 */
import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Server } from 'node:net';
import { createBus, type HoldfastEvent } from '@holdfast/core';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { faultProxy, type Toxic } from '../src/index.js';

let upstream: Server;
let upstreamPort: number;
beforeAll(async () => {
  upstream = createServer((s) => {
    s.on('error', () => {});
    s.end('hi');
  });
  upstream.listen({ port: 0, host: '127.0.0.1' });
  await once(upstream, 'listening');
  upstreamPort = (upstream.address() as AddressInfo).port;
});
afterAll(() => upstream.close());

/** A client's view: 'ECONNREFUSED', what it read before the end, or 'held' (a toxic kept it 150 ms). */
/** What a connection gets; 'held' if nothing ends it within `wait` ms. */
function dial(port: number, wait = 150): Promise<string> {
  return new Promise((resolve) => {
    const c = connect({ port, host: '127.0.0.1' });
    let got = '';
    const timer = setTimeout(() => {
      c.destroy();
      resolve('held');
    }, wait);
    c.on('data', (b) => (got += b));
    c.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(e.code ?? e.message);
    });
    c.on('close', () => {
      clearTimeout(timer);
      resolve(`read '${got}'`);
    });
  });
}

const names = fc.constantFrom('a', 'b', 'c', 'freeze');
const toxic: fc.Arbitrary<Toxic> = fc.oneof(
  fc.record({ type: fc.constant('latency' as const), latency: fc.integer({ min: 0, max: 5 }), name: names }),
  fc.record({ type: fc.constant('slicer' as const), size: fc.integer({ min: 1, max: 4 }), name: names }),
  fc.record({ type: fc.constant('blackhole' as const), name: names }),
  fc.record({ type: fc.constant('reset' as const), after: fc.constantFrom(0, 60_000), name: names }),
  fc.record({ type: fc.constant('limit' as const), bytes: fc.integer({ min: 0, max: 1 }), name: names }),
);
type Op =
  | { readonly kind: 'add'; readonly toxic: Toxic }
  | { readonly kind: 'remove'; readonly name: string }
  | { readonly kind: 'kill' | 'restore' | 'refuse' | 'accept'; readonly awaited: boolean }
  | { readonly kind: 'clear' | 'freeze' | 'resetAll' | 'dial' };
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('add' as const), toxic }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('remove' as const), name: names }) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constantFrom('kill' as const, 'restore' as const, 'refuse' as const, 'accept' as const),
      // Not awaited, as a script that fires a restore and moves on does: calls still take effect
      // in the order made.
      awaited: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constantFrom('clear' as const, 'freeze' as const, 'resetAll' as const, 'dial' as const, 'dial' as const),
    }),
  },
);

describe('faultProxy state (review)', () => {
  it('snapshot, refusals and toxic events follow the model over any sequence of control calls', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 14 }), async (ops) => {
        const bus = createBus();
        const events: HoldfastEvent[] = [];
        bus.on('chaos.toxic', (e) => void events.push(e));
        const p = await faultProxy({ target: { port: upstreamPort }, bus });
        const on = new Map<string, string>(); // name -> type, in the order added
        let listening = true;
        const pending: Promise<unknown>[] = [];
        const call = (run: Promise<unknown>, awaited: boolean) => (awaited ? run : void pending.push(run));
        try {
          for (const o of ops) {
            switch (o.kind) {
              case 'add': {
                on.delete(o.toxic.name as string);
                on.set(o.toxic.name as string, o.toxic.type);
                p.add(o.toxic);
                break;
              }
              case 'remove':
                expect(p.remove(o.name)).toBe(on.delete(o.name));
                break;
              case 'clear':
                p.clear();
                on.clear();
                break;
              case 'freeze':
                on.delete('freeze');
                on.set('freeze', 'blackhole');
                p.freeze();
                break;
              case 'kill':
                await call(p.kill(), o.awaited);
                listening = false;
                break;
              case 'restore':
                await call(p.restore(), o.awaited);
                on.clear(); // at once, awaited or not
                listening = true;
                break;
              case 'refuse':
                await call(p.refuse(), o.awaited);
                listening = false;
                break;
              case 'accept':
                await call(p.accept(), o.awaited);
                listening = true;
                break;
              case 'resetAll':
                p.resetAll();
                break;
              case 'dial': {
                await Promise.all(pending.splice(0));
                // With nothing on, the answer must come: room for a loaded machine (150 ms was
                // 'held' there). With a toxic on, holding is one of the answers allowed.
                const seen = await dial(p.port, listening && on.size === 0 ? 3_000 : 150);
                if (!listening) expect(seen).toBe('ECONNREFUSED');
                else if (on.size === 0) expect(seen).toBe(`read 'hi'`);
                else expect(seen).not.toBe('ECONNREFUSED');
                break;
              }
            }
            if (pending.length === 0) expect(p.snapshot().listening).toBe(listening);
            expect(p.snapshot().toxics.map((t) => `${t.name}:${t.type}`)).toEqual(
              [...on].map(([name, type]) => `${name}:${type}`),
            );
          }
          await Promise.all(pending.splice(0));
          expect(p.snapshot().listening).toBe(listening);
        } finally {
          // Unawaited calls still under way (a failed run): close() in turn after them.
          await p.close();
        }
        // After close(): nothing on, listening or open, and every toxic announced on went off.
        expect(p.snapshot()).toMatchObject({ listening: false, connections: 0, toxics: [] });
        expect(await dial(p.port)).toBe('ECONNREFUSED');
        const state = new Map<string, boolean>();
        for (const e of events as (HoldfastEvent & { name: string; active: boolean })[]) {
          expect(state.get(e.name) ?? false, `${e.name} announced ${e.active ? 'on' : 'off'} twice`).toBe(!e.active);
          state.set(e.name, e.active);
        }
        expect([...state].filter(([, active]) => active)).toEqual([]);
      }),
      { numRuns: 60, seed: Number(process.env.FC_SEED ?? 20261204) },
    );
  }, 120_000);
});
