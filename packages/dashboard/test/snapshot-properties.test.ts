/**
 * Property: whatever a policy's snapshot holds (names with quotes, `</script>`, newlines, any
 * unicode; URLs with credentials and secret parameters, valid or not, as values or as keys; values
 * under keys that name a credential), the dashboard's JSON snapshot parses and shows no secret.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBus, createPolicyRegistry, hideSecrets } from '@holdfast/core';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { dashboard } from '../src/index.js';

const secret = fc.stringMatching(/^[A-Za-z0-9]{6,10}$/).map((s) => `S3CR${s}`);
const scheme = fc.constantFrom('https', 'HTTP', 'redis', 'postgres', 'amqp');
const host = fc.constantFrom('db.internal:5432', '10.0.0.2', 'h:99999', 'exa mple');
const odd = fc.constantFrom('', '/', '#', '?', '@');
const secretUrl = fc
  .tuple(scheme, secret, odd, host, fc.constantFrom('token', 'api_key', 'sig'), secret)
  .map(([s, pw, o, h, p, v]) => ({ text: `${s}://app:${pw}${o}x@${h}/p?${p}=${v}&a=1`, secrets: [pw, v] }));
const credentialKey = fc.constantFrom(
  'password',
  'Authorization',
  'api_key',
  'client_secret',
  'token',
  'cookie',
  // Keys that name a credential in more than one word: a config's, a header's, a cloud SDK's.
  'redisPassword',
  'db_password',
  'x-api-key',
  'X-Auth-Token',
  'secretAccessKey',
  'privateKey',
  'sessionToken',
  'credentials',
);
const hostileName = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.constantFrom('</script><script>alert(1)</script>', '"\\\n\u2028\u2029', '<!--', '\u0000', '😀'),
);

interface Case {
  readonly snapshot: Record<string, unknown>;
  readonly secrets: string[];
}

/** A snapshot holding secrets in the places a user's own snapshot may hold them. */
const caseArb: fc.Arbitrary<Case> = fc
  .tuple(
    fc.array(fc.tuple(hostileName, secretUrl), { maxLength: 3 }),
    fc.array(fc.tuple(credentialKey, secret), { maxLength: 2 }),
    fc.array(fc.tuple(hostileName, hostileName), { maxLength: 3 }),
    fc.option(secretUrl, { nil: undefined }),
  )
  .map(([urls, creds, plain, keyed]) => {
    const snapshot: Record<string, unknown> = {};
    const secrets: string[] = [];
    for (const [name, url] of urls) {
      snapshot[`u_${name}`] = { at: url.text, list: [url.text], note: `failed over to ${url.text} now` };
      secrets.push(...url.secrets);
    }
    for (const [key, value] of creds) {
      snapshot[key] = value;
      secrets.push(value);
    }
    for (const [k, v] of plain) snapshot[`n_${k}`] = v;
    // A URL as a key (endpoints keyed by their target): a key is shown as much as a value is.
    if (keyed !== undefined) {
      snapshot.endpoints = { [keyed.text]: { up: true } };
      secrets.push(...keyed.secrets);
    }
    return { snapshot, secrets };
  });

/**
 * Each test's own registry, dashboard and server, closed after it: a property still running after
 * its test timed out finds its server closed (its next fetch fails), and registers nothing where a
 * later test looks.
 */
interface Served {
  readonly policies: ReturnType<typeof createPolicyRegistry>;
  readonly base: string;
}
const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
});

async function serve(): Promise<Served> {
  const policies = createPolicyRegistry();
  const dash = dashboard({ bus: createBus(), policies, path: '/d', interval: 1_000 });
  const server: Server = createServer(dash);
  closers.push(() => {
    dash.close();
    server.closeAllConnections();
    return new Promise((r) => server.close(r));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { policies, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** What a test has registered, held until it unregisters: the registry holds what it lists weakly. */
const held = new Set<object>();

describe('dashboard snapshot properties', () => {
  // 150 runs over HTTP, bounded by numRuns (never by time): room for a machine at load 20 on two cores.
  it('any hostile snapshot of a kind it does not know: the JSON parses and no secret shows', async () => {
    const { policies, base } = await serve();
    await fc.assert(
      fc.asyncProperty(caseArb, hostileName, async ({ snapshot, secrets }, name) => {
        const source = { snapshot: () => snapshot as never };
        const unregister = policies.register('pool', name === '' ? 'p' : name, source);
        held.add(source);
        try {
          const text = await (await fetch(`${base}/d/snapshot`)).text();
          const parsed = JSON.parse(text) as { others: { name: string }[] };
          // As the dashboard shows any name: a name that reads as credentials (`!:@`, a user `!`
          // and an empty password, in seed 650985499) is shown hidden, `***@`.
          expect(parsed.others.map((o) => o.name)).toEqual([hideSecrets(name === '' ? 'p' : name)]);
          for (const s of secrets) expect(text, `${s} shown`).not.toContain(s);
        } finally {
          unregister();
          held.delete(source);
        }
      }),
      { numRuns: 150 },
    );
  }, 60_000);

  it('regression: a URL that is a key of the snapshot showed its password and token', async () => {
    const { policies, base } = await serve();
    const source = {
      snapshot: () =>
        ({ endpoints: { 'postgres://app:pg-S3CRET@10.0.0.2:5432/db?sig=S1GNED': { up: true } } }) as never,
    };
    const unregister = policies.register('pool', 'keyed', source);
    held.add(source);
    try {
      const text = await (await fetch(`${base}/d/snapshot`)).text();
      expect(text).not.toContain('pg-S3CRET');
      expect(text).not.toContain('S1GNED');
      expect(JSON.parse(text).others).toEqual([
        {
          kind: 'pool',
          name: 'keyed',
          snapshot: { endpoints: { 'postgres://***@10.0.0.2:5432/db?sig=***': { up: true } } },
        },
      ]);
    } finally {
      unregister();
      held.delete(source);
    }
  });
});
