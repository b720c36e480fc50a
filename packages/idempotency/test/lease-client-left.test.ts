import { describe, expect, it } from 'vitest';
import { memoryStore } from '../src/index.js';
import { expressFramework, fastifyFramework } from './http-support/apps.js';
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
