/**
 * Hostile review of the fault proxy's listening state: close() or kill() while a restore() (or
 * accept()) is still opening the port. Real sockets on loopback; counted, not timed.
 */
import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type FaultProxy, faultProxy } from '../src/index.js';

const servers: Server[] = [];
const proxies: FaultProxy[] = [];
afterEach(async () => {
  await Promise.all(proxies.splice(0).map((p) => p.close()));
  for (const s of servers.splice(0)) s.close();
});

async function upstream(): Promise<number> {
  const server = createServer((s) => {
    s.on('error', () => {});
    s.end('hi');
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/** What a new client of `port` sees: 'ECONNREFUSED', or what it read before the connection ended. */
function dial(port: number): Promise<string> {
  return new Promise((resolve) => {
    const c = connect({ port, host: '127.0.0.1' });
    let got = '';
    c.on('data', (b) => (got += b));
    c.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    c.on('close', () => resolve(`connected, read '${got}'`));
  });
}

/** 'settled', or 'pending after 2 s' (a generous bound: a loopback listen or lookup takes far less). */
function state(p: Promise<unknown>): Promise<string> {
  const settled = p.then(
    () => 'settled',
    () => 'settled',
  );
  return Promise.race([settled, new Promise<string>((r) => setTimeout(() => r('pending after 2 s'), 2_000))]);
}

describe('faultProxy, review: close() and kill() while the port is being opened again', () => {
  for (const host of ['127.0.0.1', 'localhost']) {
    it(`close() while restore() is opening the port (host ${host}): nothing listens afterwards, restore() settles`, async () => {
      const p = await faultProxy({ host, target: { port: await upstream() } });
      proxies.push(p);
      await p.kill();
      const restoring = p.restore();
      await p.close();
      // The restore() ends one way or the other (no promise left pending for good)...
      expect(await state(restoring)).toBe('settled');
      // ...and the port is not open again behind close()'s back. Before the fix: true, and a new
      // client connected: the port opened once the restore's lookup came back, after close()
      // resolved, and the process could not exit.
      expect(p.snapshot().listening).toBe(false);
      expect(await dial(p.port)).toBe('ECONNREFUSED');
    });
  }

  it('kill() while restore() is opening the port: the proxy refuses once kill() resolves', async () => {
    const p = await faultProxy({ target: { port: await upstream() } });
    proxies.push(p);
    await p.kill();
    const restoring = p.restore();
    await p.kill();
    await restoring;
    // Before the fix: the restore opened the port after the kill, and the kill did not hold.
    expect(p.snapshot().listening).toBe(false);
    expect(await dial(p.port)).toBe('ECONNREFUSED');
    await p.restore();
    expect(await dial(p.port)).toBe(`connected, read 'hi'`);
  });

  it('two restore() at once after a kill: both resolve, one port, traffic flows', async () => {
    const p = await faultProxy({ target: { port: await upstream() } });
    proxies.push(p);
    await p.kill();
    await Promise.all([p.restore(), p.restore(), p.accept()]);
    expect(p.snapshot().listening).toBe(true);
    expect(await dial(p.port)).toBe(`connected, read 'hi'`);
  });

  it('restore(), refuse(), accept() called without awaiting take effect in the order called', async () => {
    const p = await faultProxy({ target: { port: await upstream() } });
    proxies.push(p);
    await p.kill();
    await Promise.all([p.restore(), p.refuse(), p.accept()]);
    // Before the fix: false. The refuse() waited for the restore's listen and closed the port
    // after the accept() (which found a listen under way) had resolved.
    expect(p.snapshot().listening).toBe(true);
    expect(await dial(p.port)).toBe(`connected, read 'hi'`);
    await Promise.all([p.refuse(), p.accept(), p.refuse()]);
    expect(p.snapshot().listening).toBe(false);
    expect(await dial(p.port)).toBe('ECONNREFUSED');
  });
});
