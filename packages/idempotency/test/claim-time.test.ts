import { ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { problemTypes } from '../src/http/index.js';
import { memoryStore } from '../src/index.js';
import { expressFramework, fastifyFramework, heldRetries } from './http-support/apps.js';

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
        const { statuses, replay, calls } = await heldRetries(app, [
          () => clock.advance(590_000),
          () => clock.advance(20_000),
        ]);
        expect([...statuses, replay.status, (replay.json() as { type: string }).type, calls]).toEqual([
          409,
          500,
          500,
          problemTypes.responseLost,
          1,
        ]);
      });
    }
  }
});
