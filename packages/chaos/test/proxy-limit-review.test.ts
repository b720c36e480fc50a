/**
 * Review: a limit toxic closes the connection once exactly its bytes have gone through, as
 * Toxiproxy's limit_data does, not only when a chunk past it arrives.
 */
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { client, listen, proxyTo, tick } from './support/review.js';

describe('faultProxy review: limit', () => {
  it('closes the connection once exactly `bytes` bytes have gone through, not at the next chunk', async () => {
    const port = await listen((s) => s.write('12345'));
    const p = await proxyTo(port);
    p.add({ type: 'limit', bytes: 5 });
    const c = client(p);
    let got = '';
    c.on('data', (b) => (got += b));
    const ended = once(c, 'close').then(() => 'closed');
    expect(await Promise.race([ended, tick(2_000).then(() => 'still open after 2 s')])).toBe('closed');
    expect(got).toBe('12345');
  });

  it('a limit of 10 over a reply of 4 then 6 bytes: both arrive, then the connection closes', async () => {
    const port = await listen((s) => {
      s.write('abcd');
      setTimeout(() => s.write('efghij'), 50);
    });
    const p = await proxyTo(port);
    p.add({ type: 'limit', bytes: 10 });
    const c = client(p);
    let got = '';
    c.on('data', (b) => (got += b));
    const ended = once(c, 'close').then(() => 'closed');
    expect(await Promise.race([ended, tick(2_000).then(() => 'still open after 2 s')])).toBe('closed');
    expect(got).toBe('abcdefghij');
  });
});
