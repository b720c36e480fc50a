/**
 * Property: whatever toxics that delay, slice, throttle or hold bytes are stacked on the fault
 * proxy, in either direction, added and removed at any point while bytes flow, every byte sent
 * comes out the other side once, in order, both ways (an echo server), once they are all off.
 */
import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { seededRandom } from '@holdfast/core';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { faultProxy, type Toxic } from '../src/index.js';

let echo: Server;
let echoPort: number;
beforeAll(async () => {
  echo = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  echo.listen({ port: 0, host: '127.0.0.1' });
  await once(echo, 'listening');
  echoPort = (echo.address() as AddressInfo).port;
});
afterAll(() => echo.close());

const direction = fc.constantFrom('upstream' as const, 'downstream' as const, 'both' as const);
const toxic: fc.Arbitrary<Toxic> = fc.oneof(
  fc.record({
    type: fc.constant('latency' as const),
    latency: fc.integer({ min: 0, max: 15 }),
    jitter: fc.integer({ min: 0, max: 15 }),
    direction,
  }),
  fc.record({
    type: fc.constant('slicer' as const),
    size: fc.oneof(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 700 })),
    delay: fc.integer({ min: 0, max: 2 }),
    direction,
  }),
  fc.record({ type: fc.constant('bandwidth' as const), rate: fc.integer({ min: 50_000, max: 5_000_000 }), direction }),
  fc.record({ type: fc.constant('blackhole' as const), direction }),
);

type Step =
  | { readonly kind: 'write'; readonly size: number }
  | { readonly kind: 'add'; readonly toxic: Toxic }
  | { readonly kind: 'remove'; readonly which: number }
  | { readonly kind: 'wait'; readonly ms: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant('write' as const), size: fc.integer({ min: 1, max: 20_000 }) }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('add' as const), toxic }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('remove' as const), which: fc.nat(10) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 10 }) }) },
);

describe('faultProxy properties', () => {
  it('any stack of delaying, slicing, throttling and holding toxics, added and removed while bytes flow: every byte, in order, both ways', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 25 }), fc.integer(), async (steps, seed) => {
        const proxy = await faultProxy({ target: { port: echoPort }, random: seededRandom(seed) });
        const client: Socket = connect({ port: proxy.port, host: '127.0.0.1' });
        client.on('error', () => {});
        try {
          await once(client, 'connect');
          const got: Buffer[] = [];
          let received = 0;
          client.on('data', (b: Buffer) => {
            got.push(b);
            received += b.length;
          });
          const sent: Buffer[] = [];
          const handles: { remove(): void }[] = [];
          let n = 0;
          for (const s of steps) {
            if (s.kind === 'write') {
              const b = Buffer.alloc(s.size);
              for (let i = 0; i < b.length; i++) b[i] = (n++ * 31 + (n >> 8)) & 0xff;
              sent.push(b);
              client.write(b);
            } else if (s.kind === 'add') handles.push(proxy.add(s.toxic));
            else if (s.kind === 'remove') handles.splice(s.which % Math.max(1, handles.length), 1)[0]?.remove();
            else await new Promise((r) => setTimeout(r, s.ms));
          }
          proxy.clear();
          const want = Buffer.concat(sent);
          const deadline = Date.now() + 3_000;
          while (received < want.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
          // A little longer: nothing more (no byte twice) may come.
          await new Promise((r) => setTimeout(r, 20));
          const echoed = Buffer.concat(got);
          expect(echoed.length).toBe(want.length);
          expect(echoed.equals(want)).toBe(true);
        } finally {
          client.destroy();
          await proxy.close();
        }
      }),
      // A failing run waits out its deadline: report the first, unshrunk, within the test's time.
      { numRuns: 150, endOnFailure: true },
    );
  }, 120_000);
});
