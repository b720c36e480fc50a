/**
 * A redirect's target on another origin is another host: its failures (a refused connection, a
 * 503) say nothing of the host that redirected, which answered. Held against that host's breaker,
 * or its base URL in a failover set, one redirecting path shut every other path of a healthy host.
 */
import { createBus } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { describe, expect, it } from 'vitest';
import { closedPort, perTest, reply, type Upstream } from './upstream.js';

const t = perTest({ bus: createBus() });

/** A host answering `ok`, but `/moved` with a 302 to `target`. */
const redirecting = (target: string) =>
  t.server((req, res) => {
    if (req.path === '/moved') {
      res.writeHead(302, { location: `${target}/elsewhere` });
      res.end();
    } else res.end('ok');
  });

const targets: [string, () => Promise<string>][] = [
  ['refuses connections', closedPort],
  ['answers 503', async () => (await t.server(reply(503))).url],
];

const breakers = [
  ['the set alone', false],
  ['the set and a breaker per host', { defaults: { consecutiveFailures: 2 } }],
] as const;

describe.each(targets)('a redirect to a host that %s', (_, target) => {
  it.each(breakers)('leaves the base URL that redirected in service (%s)', async (_, breaker) => {
    const a = await redirecting(await target());
    const b: Upstream = await t.server(reply(200, {}, 'from b'));
    const set = failover<string>({
      endpoints: [a.url, b.url],
      mode: 'active-passive',
      ejection: { consecutiveFailures: 2 },
      retry: false,
      bus: createBus(),
    });
    const http = t.client({ failover: set, retry: false, breaker });
    for (let i = 0; i < 4; i++)
      await http('/moved').then(
        (r) => r.body?.cancel(),
        () => {},
      );
    // Active-passive: a healthy `a` takes the call; an ejected one (or one whose breaker opened) would leave it to `b`.
    const res = await http('/healthy');
    expect(await res.text()).toBe('ok');
    expect(a.seen.map((s) => s.path)).toContain('/healthy');
    expect(b.seen.map((s) => s.path)).not.toContain('/healthy');
    set.dispose();
  });
});

describe('a redirect to the same origin', () => {
  it('is that host answering: a 503 there still counts against its breaker', async () => {
    const a = await t.server((req, res) => {
      if (req.path === '/moved') {
        res.writeHead(302, { location: '/busy' });
        res.end();
      } else if (req.path === '/busy') {
        res.writeHead(503);
        res.end('busy');
      } else res.end('ok');
    });
    const http = t.client({ retry: false, breaker: { defaults: { consecutiveFailures: 2 } } });
    for (let i = 0; i < 2; i++) await http(`${a.url}/moved`).then((r) => r.body?.cancel());
    const outcome = await http(`${a.url}/healthy`).then(
      (r) => r.status,
      (e: { code?: string }) => e.code,
    );
    expect(outcome).toBe('E_CIRCUIT_OPEN');
  });
});
