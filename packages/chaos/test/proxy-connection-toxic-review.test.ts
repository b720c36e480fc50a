import { once } from 'node:events';
import { createBus, type HoldfastEvent } from '@holdfast/core';
import { afterEach, describe, expect, it } from 'vitest';
import { client, listen, proxies, proxyTo, tick } from './support/review.js';

afterEach(async () => {
  for (const p of proxies.splice(0)) await p.close();
});

/**
 * A toxic bound to one connection (`connection: id`) can act on no other: connection ids are
 * never reused. Once that connection closes it is gone, and the snapshot, the dashboard and
 * metrics must not show it on. A reset acts on the whole connection, unless given one way.
 */
describe('faultProxy: toxics bound to one connection, and the direction of a reset', () => {
  it('a toxic on one connection is taken off (announced off) when that connection closes', async () => {
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('chaos.toxic', (e) => void events.push(e));
    const port = await listen((s) => {
      s.on('data', (b) => s.write(b));
      s.on('end', () => s.end());
    });
    const p = await proxyTo(port, { bus });
    const c = client(p);
    await once(c, 'connect');
    await tick(20);
    const [conn] = p.connections();
    p.add({ type: 'latency', latency: 5, connection: conn?.id, name: 'slow-one' });
    p.add({ type: 'latency', latency: 5, name: 'slow-all' });
    expect(p.snapshot().toxics.map((t) => t.name)).toEqual(['slow-one', 'slow-all']);
    c.destroy();
    for (let i = 0; i < 100 && p.connections().length > 0; i++) await tick(10);
    expect(p.connections()).toEqual([]);
    expect(p.snapshot().toxics.map((t) => t.name)).toEqual(['slow-all']);
    expect(events.map((e) => e.type === 'chaos.toxic' && `${e.name}:${e.active}`)).toEqual([
      'slow-one:true',
      'slow-all:true',
      'slow-one:false',
    ]);
  });

  it('a toxic for a connection that is not open is refused with an error naming it', async () => {
    const port = await listen((s) => s.end());
    const p = await proxyTo(port);
    expect(() => p.add({ type: 'latency', latency: 5, connection: 42 })).toThrow(
      /faultProxy\.add: connection is not the id of an open connection.*got 42/,
    );
    expect(p.snapshot().toxics).toEqual([]);
  });

  it('a reset acts on the whole connection unless given one way (Toxiproxy reset_peer): shown as it acts', async () => {
    const port = await listen((s) => s.end());
    const p = await proxyTo(port);
    p.add({ type: 'reset', after: 60_000, name: 'r' });
    expect(p.snapshot().toxics).toEqual([{ name: 'r', type: 'reset', direction: 'both' }]);
    // One way it resets on the first data that way (see proxy-reset-peer.test.ts).
    p.add({ type: 'reset', direction: 'upstream', name: 'up' });
    expect(p.snapshot().toxics[1]).toEqual({ name: 'up', type: 'reset', direction: 'upstream' });
    expect(() => p.add({ type: 'reset', direction: 'both' })).not.toThrow();
  });
});
