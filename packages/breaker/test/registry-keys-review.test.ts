/** Hostile review of keys shown without their secrets (commit 23549e4): keys that leaked anyway, keys that showed alike. */
import { createBus, policies as globalPolicies, type HoldfastEvent, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { breakerRegistry } from '../src/index.js';
import { fail } from './support.js';

function registry() {
  const clock = new ManualClock(0);
  const bus = createBus();
  const events: HoldfastEvent[] = [];
  bus.on('*', (e) => events.push(e));
  const hosts = breakerRegistry({ name: 'db', clock, bus, policies: false, defaults: { minimumCalls: 1 } });
  return { clock, events, hosts };
}

describe('breakerRegistry keys that hold a secret (review)', () => {
  const secrets: [string, string][] = [
    ['two DSNs in one key', 'primary=postgres://app:pw1@h1/db,replica=postgres://app:hunter2@h2/db'],
    ['an unencoded / in a DSN password', 'postgres://app:hun/ter2@h/db'],
    ['a DSN password that parses as a port', 'postgres://app:12/hunter2@h/db'],
    ['a libpq keyword/value DSN', 'host=db1 user=app password=hunter2 dbname=orders'],
    ['a quoted libpq password', "host=db1 password='hunter2 x' dbname=orders"],
    ['an ODBC connection string', 'Server=db1;Database=orders;User Id=app;Password=hunter2;'],
    ['user:password@host, no scheme', 'app:hunter2@db1:5432'],
    ['a password with a space', 'postgres://app:hun ter2@h/db'],
    ['a token after a URL', 'https://api.example/v1 password=hunter2'],
  ];
  for (const [what, key] of secrets) {
    it(`does not show the password of ${what}`, async () => {
      const { hosts, events } = registry();
      await hosts.execute(key, fail()).catch(() => undefined);
      const refused = await hosts.execute(key, fail()).catch((e: Error) => e);
      const shown = JSON.stringify({ snapshot: hosts.snapshot(), events, message: (refused as Error).message });
      expect(shown).not.toMatch(/hunter2|hun\/ter2|ter2/);
      expect(events.some((e) => e.type === 'breaker.open')).toBe(true);
    });
  }

  it('keeps what is no secret: a web path with an @, the host, the other parameters', () => {
    const { hosts } = registry();
    for (const key of [
      'https://registry.npmjs.org/@types/node',
      'https://u:p@api.example/x?token=t&page=2',
      'tenant-a',
    ])
      hosts.get(key);
    expect(Object.keys(hosts.snapshot().breakers)).toEqual([
      'https://registry.npmjs.org/@types/node',
      'https://***@api.example/x?token=***&page=2',
      'tenant-a',
    ]);
  });

  it('two keys that show alike get breakers named apart: events, snapshot and listing keep both', async () => {
    const clock = new ManualClock(0);
    const bus = createBus();
    const opened: string[] = [];
    bus.on('breaker.open', (e) => opened.push(e.source));
    const hosts = breakerRegistry({ name: 'db', clock, bus, defaults: { minimumCalls: 1 } });
    const app = 'postgres://app:pw1@db1/orders';
    const report = 'postgres://report:pw2@db1/orders';
    await hosts.execute(app, fail()).catch(() => undefined);
    hosts.get(report);
    const snap = hosts.snapshot();
    expect(snap.size).toBe(2);
    expect(Object.keys(snap.breakers)).toHaveLength(2);
    expect(snap.breakers['postgres://***@db1/orders']?.state).toBe('open');
    expect(snap.breakers['postgres://***@db1/orders #2']?.state).toBe('closed');
    expect(opened).toEqual(['db:postgres://***@db1/orders']);
    const listed = globalPolicies
      .snapshots('breaker')
      .map((p) => p.name)
      .filter((n) => n.startsWith('db:postgres'));
    expect(new Set(listed).size).toBe(2);
    // A restart restores both, each to the breaker of its shown name (the order of first use).
    const restarted = breakerRegistry({ clock, restore: JSON.parse(JSON.stringify(snap)), policies: false });
    expect(restarted.get(app).state).toBe('open');
    expect(restarted.get(report).state).toBe('closed');
    // A key dropped gives its shown name back.
    hosts.delete(app);
    hosts.get('postgres://admin:pw3@db1/orders');
    expect(Object.keys(hosts.snapshot().breakers).sort()).toEqual([
      'postgres://***@db1/orders',
      'postgres://***@db1/orders #2',
    ]);
    hosts.dispose();
    restarted.dispose();
  });

  it('a key that is literally a shown form cannot take over the DSN it shows like', async () => {
    const { hosts } = registry();
    const dsn = 'postgres://app:pw1@db1/orders';
    await hosts.execute('postgres://***@db1/orders', fail()).catch(() => undefined);
    expect(hosts.get(dsn).state).toBe('closed');
    expect(Object.keys(hosts.snapshot().breakers)).toHaveLength(2);
  });
});
