import { ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { problemTypes } from '../src/http/index.js';
import { memoryStore } from '../src/index.js';
import { expressFramework, fastifyFramework } from './http-support/apps.js';
import { newKey, send } from './http-support/support.js';
import { sleep } from './redis.js';

/**
 * A run's start is when its key was claimed, on the middleware's clock. The in-process store's
 * reading of the claim is taken for it only when the store keeps the same clock: on another
 * clock (another line of time), maxRunMs measured from the store's reading capped a run at once
 * or never. A handler held past maxRunMs (600 s by default): a retry 10 s before it conflicts,
 * one 10 s after it gets the response-lost problem, and the handler ran once.
 */
const arrangements = [
  { name: 'one clock', store: 1_000, middleware: undefined },
  { name: "the store's clock far ahead", store: 5_000_000_000, middleware: 1_000 },
  { name: "the middleware's clock far ahead", store: 1_000, middleware: 5_000_000_000 },
] as const;

describe('maxRunMs counts from the claim, on the middleware’s clock', () => {
  for (const framework of [expressFramework, fastifyFramework]) {
    for (const arrangement of arrangements) {
      it(`${framework.name}, ${arrangement.name}: 409 at 590 s, response-lost at 610 s, one run`, async () => {
        const storeClock = new ManualClock(arrangement.store);
        const clock = arrangement.middleware === undefined ? storeClock : new ManualClock(arrangement.middleware);
        const app = await framework.start({ store: memoryStore({ clock: storeClock }), leaseMs: 300, clock });
        try {
          const key = newKey();
          const first = send(`${app.url}/slow`, { key, body: { a: 1 } });
          while (app.gate.entered === 0) await sleep(5);
          const statusAfter = async (ms: number) => {
            await clock.advance(ms);
            const retry = send(`${app.url}/slow`, { key, body: { a: 1 } });
            // A retry that ran the handler again would wait at its gate.
            return Promise.race([retry.then((r) => r.status), sleep(1_000).then(() => 'ran')]);
          };
          const before = await statusAfter(590_000);
          const after = await statusAfter(20_000);
          app.gate.open();
          await first;
          const replay = await send(`${app.url}/slow`, { key, body: { a: 1 } });
          expect([before, after, replay.status, (replay.json() as { type: string }).type]).toEqual([
            409,
            500,
            500,
            problemTypes.responseLost,
          ]);
          expect(app.calls.get('slow')).toBe(1);
        } finally {
          app.gate.open();
          await app.close();
        }
      });
    }
  }
});
