import { afterEach, describe, expect, it } from 'vitest';
import { memoryStore } from '../src/index.js';
import { expressFramework, fastifyFramework, type TestApp } from './http-support/apps.js';
import { newKey, send } from './http-support/support.js';
import { sleep } from './redis.js';

describe('a renewed run whose client leaves past its first lease', () => {
  for (const framework of [expressFramework, fastifyFramework]) {
    /**
     * leaseMs 300: the handler's lease is renewed; its client leaves at 600 ms and the handler ends
     * the response 100 ms later. That response is stored whole, as for a client leaving within the
     * first lease. (The response-lost problem was stored at once: its timer counted from the claim.)
     */
    it(`${framework.name}: the handler ends the response 100 ms after its client left at 600 ms: stored whole, the retry replays it`, async () => {
      const app = await framework.start({ store: memoryStore(), leaseMs: 300 });
      try {
        const key = newKey();
        const left = new AbortController();
        const first = send(`${app.url}/slow`, { key, body: { a: 1 }, signal: left.signal }).catch(() => 'left');
        while (app.gate.entered === 0) await sleep(5);
        await sleep(600);
        left.abort();
        expect(await first).toBe('left');
        await sleep(100);
        app.gate.open();
        let retry = await send(`${app.url}/slow`, { key, body: { a: 1 } });
        for (let i = 0; i < 50 && retry.status === 409; i++) {
          await sleep(20);
          retry = await send(`${app.url}/slow`, { key, body: { a: 1 } });
        }
        expect([retry.status, retry.headers.get('idempotent-replayed'), retry.json(), app.calls.get('slow')]).toEqual([
          200,
          'true',
          { n: 1 },
          1,
        ]);
      } finally {
        app.gate.open();
        await app.close();
      }
    });
  }
});

/**
 * A client that times out and retries, against a handler slower than `leaseMs` (the lease is
 * renewed): the first client leaves at 100 ms, the handler ends its response after 8 retries 100 ms apart. Its
 * response is the key's answer, not the response-lost problem stored when the first lease would
 * have run out.
 */
describe('a renewed run whose client left is stored whole when it ends', () => {
  const apps: TestApp[] = [];
  afterEach(async () => {
    for (const app of apps.splice(0)) {
      app.gate.open();
      await app.close();
    }
  });

  for (const framework of [expressFramework, fastifyFramework]) {
    it(`${framework.name}: leaseMs 300, the client leaves at 100 ms, the handler ends after 8 retries 100 ms apart: they get 409, then its 200`, async () => {
      const app = await framework.start({ store: memoryStore(), leaseMs: 300 });
      apps.push(app);
      const key = newKey();
      const first = send(`${app.url}/slow`, { key, body: { a: 1 }, signal: AbortSignal.timeout(100) }).catch(
        (error: Error) => error.name,
      );
      expect(await first).toBe('TimeoutError');
      // The handler still runs, past its first lease (renewed), until the gate opens.
      const statuses: number[] = [];
      for (let i = 0; i < 8; i++) {
        await sleep(100);
        statuses.push((await send(`${app.url}/slow`, { key, body: { a: 1 } })).status);
      }
      app.gate.open();
      let replay = await send(`${app.url}/slow`, { key, body: { a: 1 } });
      for (let i = 0; i < 50 && replay.status === 409; i++) {
        await sleep(20);
        replay = await send(`${app.url}/slow`, { key, body: { a: 1 } });
      }
      expect([app.calls.get('slow'), statuses, replay.status, replay.json()]).toEqual([
        1,
        Array(8).fill(409),
        200,
        { n: 1 },
      ]);
    });
  }
});
