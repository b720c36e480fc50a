/**
 * Toxiproxy's reset_peer (toxics/reset_peer.go) waits for the first chunk through its stub, then
 * `timeout` ms, then closes with SO_LINGER 0 (an RST), that chunk not forwarded: with the
 * default downstream stream, the request reaches the server and its reply is lost to a reset (a
 * lost reply: not safe to resend without idempotency). A one-way `reset` does the same here; a
 * reset on `both` (the default) keeps acting on the connection at once.
 */
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { client, listen, proxyTo, tick } from './support/review.js';

/** A server that counts each line it gets and answers it. */
async function counting() {
  const got: string[] = [];
  const port = await listen((s) =>
    s.on('data', (b) => {
      got.push(b.toString().trim());
      s.write(`re ${b}`);
    }),
  );
  return { port, got };
}

/** What a client saw: the bytes it got, and how the connection ended. */
function watch(c: Socket) {
  const seen = { bytes: '', error: '', closed: false };
  c.on('data', (b) => (seen.bytes += b));
  c.on('error', (e: NodeJS.ErrnoException) => (seen.error = e.code ?? e.message));
  c.on('close', () => (seen.closed = true));
  return seen;
}

describe('faultProxy reset, one way: Toxiproxy reset_peer', () => {
  it('downstream: an idle connection is left alone; the first reply is lost to a reset, the request was served', async () => {
    const server = await counting();
    const p = await proxyTo(server.port);
    const c = client(p);
    await once(c, 'connect');
    const seen = watch(c);
    p.add({ type: 'reset', direction: 'downstream' });
    await tick(100);
    expect(seen.closed).toBe(false); // no data yet: nothing to reset on
    c.write('charge 42\n');
    for (let i = 0; i < 100 && !seen.closed; i++) await tick(10);
    expect(server.got).toEqual(['charge 42']);
    expect(seen).toEqual({ bytes: '', error: 'ECONNRESET', closed: true });
  });

  it('upstream, after 100 ms: the request never reaches the server, the client is reset', async () => {
    const server = await counting();
    const p = await proxyTo(server.port);
    p.add({ type: 'reset', direction: 'upstream', after: 100 });
    const c = client(p);
    await once(c, 'connect');
    const seen = watch(c);
    await tick(150);
    expect(seen.closed).toBe(false); // `after` counts from the first data, not from the connection
    c.write('charge 43\n');
    for (let i = 0; i < 100 && !seen.closed; i++) await tick(10);
    expect(server.got).toEqual([]);
    expect(seen).toMatchObject({ bytes: '', error: 'ECONNRESET', closed: true });
  });

  it('taken off before it fires, the held chunk goes on', async () => {
    const server = await counting();
    const p = await proxyTo(server.port);
    const r = p.add({ type: 'reset', direction: 'upstream', after: 5_000 });
    const c = client(p);
    await once(c, 'connect');
    const seen = watch(c);
    c.write('charge 44\n');
    await tick(50);
    r.remove();
    for (let i = 0; i < 100 && seen.bytes === ''; i++) await tick(10);
    expect(server.got).toEqual(['charge 44']);
    expect(seen).toMatchObject({ bytes: 're charge 44\n', error: '', closed: false });
  });
});
