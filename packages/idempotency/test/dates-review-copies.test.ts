import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

// Review of 5ae09ced (StoreNow v6 -> v7): a memoryStore() record no longer has a `createdAt`; the
// middleware asks the store's own calls for it. Two copies of the package in one process (the
// ESM and the CommonJS builds, dist/: run `pnpm build` first) share the store's calls under one
// Symbol.for key: the replay event of a store of one copy, replayed by the other copy's
// middleware (Express, and Fastify over a socket: its early replay), has the first request's date.

const run = promisify(execFile);
const dist = new URL('../dist/', import.meta.url).pathname;
const load = (build: 'cjs' | 'esm', entry: string) =>
  build === 'cjs'
    ? `require(${JSON.stringify(`${dist}${entry}.cjs`)})`
    : `await import(${JSON.stringify(`${dist}${entry}.js`)})`;

describe('ESM and CJS builds in one process: the replay event has the first request date', () => {
  for (const framework of ['express', 'fastify'] as const) {
    it.each([
      ['cjs', 'esm'],
      ['esm', 'cjs'],
    ] as const)(`${framework}: a %s store, the %s middleware`, async (storeBuild, appBuild) => {
      const serve =
        framework === 'express'
          ? `const app = require('express')();
        app.use(idempotency({ store, scope: 'global', bus }));
        app.post('/o', (_q, r) => { runs++; r.status(201).send('made'); });
        const server = app.listen(0, '127.0.0.1');
        await new Promise((r) => server.once('listening', r));
        const port = server.address().port;
        const close = () => server.close();`
          : `const app = require('fastify')();
        await app.register(idempotency, { store, scope: 'global', bus });
        app.post('/o', async (_q, r) => { runs++; return r.code(201).send('made'); });
        await app.listen({ port: 0, host: '127.0.0.1' });
        const port = app.server.address().port;
        const close = () => app.close();`;
      const script = `
        import { createRequire } from 'node:module';
        const require = createRequire(${JSON.stringify(dist)});
        const { createBus } = require('@holdfast/core');
        const store = (${load(storeBuild, 'index')}).memoryStore();
        const { idempotency } = ${load(appBuild, framework)};
        const bus = createBus();
        const events = [];
        bus.on('idempotency.replay', (e) => events.push(e.createdAt));
        let runs = 0;
        ${serve}
        const send = () => fetch('http://127.0.0.1:' + port + '/o', { method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': 'k' }, body: '{"a":1}' });
        const before = Date.now();
        const first = await send(); await first.text();
        const after = Date.now();
        const second = await send(); await second.text();
        console.log(JSON.stringify({ statuses: [first.status, second.status], replayed: second.headers.get('idempotent-replayed'), runs, events, before, after }));
        await close();
        store.dispose();
      `;
      const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], {
        cwd: new URL('..', import.meta.url).pathname,
      });
      const result = JSON.parse(stdout);
      expect([result.statuses, result.replayed, result.runs]).toEqual([[201, 201], 'true', 1]);
      expect(result.events).toHaveLength(1);
      expect(typeof result.events[0]).toBe('number');
      expect(result.events[0]).toBeGreaterThanOrEqual(result.before);
      expect(result.events[0]).toBeLessThanOrEqual(result.after);
    });
  }
});
