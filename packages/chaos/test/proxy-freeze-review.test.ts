/**
 * Review: a freeze (a blackhole) put on while a bandwidth or slicer toxic is part way through a
 * chunk, or while a latency toxic holds it, holds the rest: a frozen peer sends nothing more.
 * Real bytes over loopback, counted and checksummed.
 */
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { Toxic } from '../src/index.js';
import { client, listen, proxyTo, sha, tick } from './support/review.js';

/** 60,000 numbered bytes: one chunk a bandwidth or slicer toxic takes seconds to let through. */
const REPLY = Buffer.alloc(60_000);
for (let i = 0; i < REPLY.length; i++) REPLY[i] = (i * 31 + (i >> 8)) & 0xff;

describe('faultProxy review: a freeze holds bytes a shaping toxic is part way through', () => {
  const shapers: Toxic[] = [
    { type: 'bandwidth', rate: 20_000 },
    { type: 'slicer', size: 500, delay: 10 },
  ];
  for (const shaper of shapers) {
    it(`${shaper.type}: once frozen, not one more byte reaches the client; once lifted, the rest arrives whole`, async () => {
      const port = await listen((s) => s.write(REPLY));
      const p = await proxyTo(port);
      p.add(shaper);
      const c = client(p);
      const got: Buffer[] = [];
      let bytes = 0;
      c.on('data', (b: Buffer) => {
        got.push(b);
        bytes += b.length;
      });
      // Part way through the one chunk the server sent.
      while (bytes === 0) await tick(5);
      const freeze = p.freeze();
      await tick(50); // a piece already handed to the socket may still land
      const atFreeze = bytes;
      await tick(500);
      expect(bytes, 'bytes that reached the client while frozen').toBe(atFreeze);
      expect(atFreeze).toBeLessThan(REPLY.length);
      freeze.remove();
      p.clear();
      while (bytes < REPLY.length) await tick(5);
      expect(sha(Buffer.concat(got))).toBe(sha(REPLY));
    }, 20_000);
  }

  it('a blackhole on one direction added during a latency wait holds that chunk too', async () => {
    const port = await listen((s) => s.write(REPLY.subarray(0, 100)));
    const p = await proxyTo(port);
    p.add({ type: 'latency', latency: 200 });
    const c = client(p);
    let bytes = 0;
    c.on('data', (b: Buffer) => (bytes += b.length));
    await tick(50); // the reply is waiting out its latency
    const hole = p.add({ type: 'blackhole', direction: 'downstream' });
    await tick(500);
    expect(bytes, 'bytes through a blackhole').toBe(0);
    hole.remove();
    while (bytes < 100) await tick(5);
    expect(bytes).toBe(100);
  }, 20_000);
});

describe('faultProxy review: a freeze holds a close (FIN) as it holds bytes', () => {
  it('the server closes while frozen: the client sees no end until the freeze is lifted, then its end', async () => {
    let serverSide: Socket | undefined;
    const port = await listen((s) => (serverSide = s));
    const p = await proxyTo(port);
    const c = client(p);
    await once(c, 'connect');
    while (serverSide === undefined) await tick(5);
    const freeze = p.freeze();
    let ended = false;
    c.on('end', () => (ended = true));
    serverSide.end(); // nothing queued ahead of the FIN
    await tick(300);
    expect(ended, 'a FIN went through a freeze').toBe(false);
    freeze.remove();
    while (!ended) await tick(5);
  }, 10_000);

  it('the client half-closes while frozen: the server sees no end until lifted; bytes sent before it arrive first', async () => {
    let got = '';
    let serverEnded = false;
    const port = await listen((s) => {
      s.on('data', (b) => (got += b));
      s.on('end', () => (serverEnded = true));
    });
    const p = await proxyTo(port);
    const c = client(p);
    await once(c, 'connect');
    const freeze = p.freeze();
    c.end('last words');
    await tick(300);
    expect({ got, serverEnded }).toEqual({ got: '', serverEnded: false });
    freeze.remove();
    while (!serverEnded) await tick(5);
    expect(got).toBe('last words');
  }, 10_000);

  it('an empty close and one behind held bytes are held alike: with nothing queued the FIN waits too', async () => {
    let serverSide: Socket | undefined;
    const port = await listen((s) => (serverSide = s));
    const p = await proxyTo(port);
    const c = client(p);
    await once(c, 'connect');
    while (serverSide === undefined) await tick(5);
    p.add({ type: 'blackhole', direction: 'downstream' });
    let ended = false;
    c.on('end', () => (ended = true));
    serverSide.end();
    await tick(300);
    expect(ended).toBe(false);
    await p.close();
  }, 10_000);
});
