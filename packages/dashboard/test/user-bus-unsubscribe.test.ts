/**
 * A `{ bus }` of the user's own (an EventEmitter adapter) whose `on()` returns no unsubscribe
 * (`this`, as emitter.on() does), or whose unsubscribe throws. close() threw `off is not a
 * function` half way: the page's snapshot timer kept running (holding the process open), the
 * other listeners stayed on the bus, and a page that hung up threw from its socket's 'close'.
 * The bus is told once (HOLDFAST_BUS_ERROR) and close() finishes.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createPolicyRegistry, ManualClock } from '@holdfast/core';
import { afterEach, describe, expect, it } from 'vitest';
import { brokenAdapters, emitterBus } from '../../../test/support/user-bus.js';
import { recordWarnings, tick } from '../../../test/support/warnings.js';
import { dashboard } from '../src/index.js';

const warnings = recordWarnings();
const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

describe('dashboard() on a user bus whose unsubscribe is broken', () => {
  it.each(brokenAdapters())(
    'close() finishes with a page open when on() %s, and the bus is told once',
    async (_, off, left) => {
      const { bus, listeners } = emitterBus(off);
      const clock = new ManualClock(0);
      const dash = dashboard({ bus, clock, policies: createPolicyRegistry() });
      const server = createServer(dash);
      servers.push(server);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const abort = new AbortController();
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/holdfast/events`, {
        signal: abort.signal,
      });
      await (res.body as ReadableStream<Uint8Array>).getReader().read();
      expect(dash.clients).toBe(1);
      expect(clock.pending).toBe(1);
      const subscribed = listeners();
      expect(() => dash.close()).not.toThrow();
      expect(dash.clients).toBe(0);
      expect(clock.pending).toBe(0);
      expect(listeners()).toBe(left(subscribed));
      abort.abort();
      await tick();
      expect(warnings.filter((w) => w.code === 'HOLDFAST_BUS_ERROR')).toHaveLength(1);
    },
  );
});
