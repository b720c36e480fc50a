import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBus, type EventOf, type EventType, ManualClock } from '@holdfast/core';
import { seeded } from './seeded.js';

/** A manual clock, a private bus, and every event it carries (for the hostile reviews). */
export function hostileHarness(start = 1_000_000) {
  const clock = new ManualClock(start);
  const bus = createBus({ onListenerError: () => {} });
  const events: EventOf<EventType>[] = [];
  bus.on('*', (e) => events.push(e as EventOf<EventType>));
  const of = <K extends EventType>(type: K) => events.filter((e) => e.type === type) as unknown as EventOf<K>[];
  return { clock, bus, events, of, random: seeded(7) };
}

/** A connection refused, as fetch reports it: proves the call never reached its endpoint. */
export function refusedError(): Error {
  return new TypeError('fetch failed', {
    cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
  });
}

/** An HTTP server on a free loopback port that counts the requests it executed. */
export async function countingServer(name: string): Promise<{
  server: Server;
  port: number;
  url: string;
  readonly executed: number;
  close(): Promise<void>;
}> {
  let executed = 0;
  const server = createServer((req, res) => {
    executed++;
    req.resume();
    res.end(name);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    get executed() {
      return executed;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
