/**
 * Review: a target given as a URL or `user:password@host` is refused naming the field, and the
 * password shows in no error, event or snapshot; host names and IP literals still work.
 */
import { once } from 'node:events';
import { HoldfastConfigError } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { type FaultProxyOptions, faultProxy } from '../src/index.js';
import { client, listen, proxies, proxyTo } from './support/review.js';

describe('faultProxy review: credentials in a target', () => {
  it('a target given as a URL with a password: refused, naming the field, the password nowhere', async () => {
    const attempts: unknown[] = [
      { target: 'redis://:hunter2@127.0.0.1:6379' },
      { target: { host: 'redis://default:hunter2@127.0.0.1', port: 6379 } },
      { target: { host: 'default:hunter2@127.0.0.1', port: 6379 } },
      { target: { host: 'postgres://app:hunter2@db/orders?sslmode=require', port: 5432 } },
      { target: { host: '127.0.0.1', port: 6379 }, host: 'x:hunter2@127.0.0.1' },
    ];
    for (const options of attempts) {
      const error = await faultProxy(options as FaultProxyOptions).then(
        (p) => {
          proxies.push(p);
          return p.snapshot();
        },
        (e: unknown) => e,
      );
      expect(error, JSON.stringify(options)).toBeInstanceOf(HoldfastConfigError);
      const { message, issues } = error as HoldfastConfigError;
      expect(message).toMatch(/host|target/);
      expect(message).not.toContain('hunter2');
      expect(JSON.stringify(issues)).not.toContain('hunter2');
    }
  });

  it('host names and IP literals still work: localhost, ::1, an IPv4', async () => {
    const port = await listen((s) => s.end('hi'));
    for (const host of ['localhost', '127.0.0.1']) {
      const p = await proxyTo(port, { target: { host, port } });
      const c = client(p);
      let got = '';
      c.on('data', (b) => (got += b));
      await once(c, 'end');
      expect(got).toBe('hi');
    }
    // An IPv6 literal is a host, not a host:port (nothing need listen there for the check).
    const p6 = await proxyTo(port, { target: { host: '::1', port } });
    expect(p6.snapshot().target).toBe(`[::1]:${port}`);
  });
});
