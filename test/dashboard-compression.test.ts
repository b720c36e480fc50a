/**
 * The dashboard behind compression middleware, as Express apps often mount it for everything:
 * its live page must still get each snapshot as it is sent, not when a gzip window fills.
 */
import { createServer, request, type Server } from 'node:http';
import { createRequire } from 'node:module';
import { createGunzip } from 'node:zlib';
import { createBus, createPolicyRegistry } from '@holdfast/core';
import { dashboard } from '@holdfast/dashboard';
import express from 'express';
import { afterEach, expect, it } from 'vitest';

// compression is a devDependency of @holdfast/idempotency, not of the root.
type Compression = (options?: { threshold?: number }) => express.RequestHandler;
const compression = createRequire(new URL('../packages/idempotency/package.json', import.meta.url))(
  'compression',
) as Compression;

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** What the page has read of its event stream once a snapshot came, or after 3 s without one. */
function firstSnapshot(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const headers = { 'accept-encoding': 'gzip' };
    const req = request({ port, host: '127.0.0.1', path: '/holdfast/events', headers }, (res) => {
      const body = res.headers['content-encoding'] === 'gzip' ? res.pipe(createGunzip()) : res;
      let text = '';
      const done = () => {
        clearTimeout(timer);
        req.destroy();
        resolve(text);
      };
      const timer = setTimeout(done, 3_000);
      body.on('data', (chunk: Buffer) => {
        text += chunk.toString('utf8');
        if (text.includes('event: snapshot')) done();
      });
    });
    req.on('error', reject);
    req.end();
  });
}

it('behind compression(): the page gets its first snapshot as it is sent', async () => {
  const dash = dashboard({ bus: createBus(), policies: createPolicyRegistry(), interval: 100 });
  const app = express();
  app.use(compression({ threshold: 0 }));
  app.use(dash);
  const server: Server = createServer(app);
  cleanups.push(() => {
    dash.close();
    server.closeAllConnections();
    server.close();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const read = await firstSnapshot((server.address() as { port: number }).port);
  expect(read, 'the page read no snapshot in 3 s').toContain('event: snapshot');
});
