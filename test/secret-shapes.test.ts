/**
 * Secrets written as a config line, a connection string or a header (not as a URL) must not
 * reach events, snapshots or the dashboard: Azure `AccountKey=`/`SharedAccessKey=`/
 * `SharedAccessSignature=`, `password: x`, `"password":"x"`, `secret:`, `token:`,
 * `aws_secret_access_key=`, `Authorization: Bearer x`. Text that holds none is left as it is:
 * an image digest (`nginx:1.25@sha256:...`), a URL without credentials, an e-mail address.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { circuitBreaker } from '@holdfast/breaker';
import { createBus, createPolicyRegistry, type HoldfastEvent, ManualClock, Redactor } from '@holdfast/core';
import { dashboard } from '@holdfast/dashboard';
import { failover } from '@holdfast/failover';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';

/** A secret: distinctive enough that finding it in the output means it leaked (base64 ones too). */
const secret = fc
  .tuple(fc.stringMatching(/^[A-Za-z0-9]{6,12}$/), fc.constantFrom('', '+/x', '-_y', '.z', '~w'))
  .map(([s, tail]) => `S3CR${s}${tail}`);

type Shape = (s: string) => string;
/** Each way a secret is written outside a URL, as a user's config, driver or SDK writes it. */
const shapes: Record<string, Shape> = {
  azureAccountKey: (s) =>
    `DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=${s}==;EndpointSuffix=core.windows.net`,
  azureSharedAccessKey: (s) =>
    `Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=${s}=`,
  azureSas: (s) =>
    `BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=2022-11-02&ss=b&se=2030-01-01&sig=${s}%3D`,
  yamlPassword: (s) => `password: ${s}`,
  jsonPassword: (s) => `{"user":"app","password":"${s}"}`,
  jsonPasswordSpaced: (s) => `{ "password" : "${s}", "user": "app" }`,
  yamlSecret: (s) => `secret: ${s}`,
  yamlToken: (s) => `token: ${s}`,
  jsQuoted: (s) => `{ apiKey: '${s}', region: 'eu' }`,
  awsEnv: (s) => `aws_secret_access_key=${s}`,
  awsIni: (s) => `aws_secret_access_key = ${s}`,
  bearerHeader: (s) => `Authorization: Bearer ${s}`,
  bearerAlone: (s) => `sent Bearer ${s} to the API`,
};
const shapeName = fc.constantFrom(...Object.keys(shapes));
const before = fc.constantFrom('', 'connect failed: ', 'config {', 'orders ');
const after = fc.constantFrom('', ' (retrying)', '\nnext line', ', then', '; host=db');

/** Text that holds no secret, as a name or a message may: left exactly as it is. */
const hex64 = fc.stringMatching(/^[a-f0-9]{64}$/);
const ordinary = fc.oneof(
  hex64.map((h) => `nginx:1.25@sha256:${h}`),
  hex64.map((h) => `localhost:5000/team/app:v2@sha256:${h}`),
  hex64.map((h) => `ghcr.io/org/app@sha256:${h}`),
  fc.constantFrom(
    'user@example.com',
    'ops-team@example.com: paged',
    'https://api.example.com/v1?page=2&sort=asc',
    'SharedAccessKeyName=RootManageSharedAccessKey',
    'aws_access_key_id=AKIAIOSFODNN7EXAMPLE',
    'maxTokens: 100',
    'token_type: bearer',
    'orders-db',
  ),
);

const redactor = new Redactor();

describe('core: secrets outside URLs are hidden at their source', () => {
  it('property: no generated secret of these shapes survives Redactor.text()', () => {
    fc.assert(
      fc.property(shapeName, secret, before, after, (name, s, b, a) => {
        const shown = redactor.text(`${b}${(shapes[name] as Shape)(s)}${a}`);
        expect(shown, `${name}: ${shown}`).not.toContain(s.slice(0, 10));
        expect(shown).toContain('***');
      }),
      { numRuns: 1_000 },
    );
  });

  it('property: ordinary text (digests, URLs without credentials, e-mail) is left as it is', () => {
    fc.assert(
      fc.property(ordinary, (text) => {
        expect(redactor.text(text)).toBe(text);
        expect(circuitBreaker({ name: text, policies: false }).name).toBe(text);
      }),
    );
  });

  it('a secret quoted in a message keeps its closing quote (a config error\'s `(got "…")`)', () => {
    // The unquoted value ran through the closing quote: `(got "http://h/?api_key=***)`.
    expect(redactor.text('(got "http://127.0.0.1:1/?api_key=abc")')).toBe('(got "http://127.0.0.1:1/?api_key=***")');
    expect(redactor.text('(got "password=abc") and more')).toBe('(got "password=***") and more');
    expect(redactor.text("(got 'token: abc'), next")).toBe("(got 'token: ***'), next");
    // A quote inside the value is still part of it: nothing after it shows.
    expect(redactor.text('password=ab"cd;x=1')).toBe('password=***;x=1');
    fc.assert(
      fc.property(fc.stringMatching(/^[A-Za-z0-9]{1,12}$/), fc.constantFrom('"', "'"), (secret, q) => {
        const shown = redactor.text(`(got ${q}password=${secret}${q})`);
        expect(shown).toBe(`(got ${q}password=***${q})`);
      }),
    );
  });

  it('hostile text is hidden in linear time, and a URL glued to a word is still found', () => {
    // Was 15.8 s for 100,000 characters: the URL pattern was tried at each word of `a-a-a-…`.
    for (const text of ['a-'.repeat(50_000), 'password'.repeat(20_000), `pwd={${'}}'.repeat(50_000)}`]) {
      const started = performance.now();
      redactor.text(text);
      expect(performance.now() - started, text.slice(0, 20)).toBeLessThan(500);
    }
    expect(redactor.text('cfg_redis://app:S3CRglued@cache:6379')).toBe('cfg_redis://***@cache:6379');
  });

  it('a policy named with each shape shows none of its secret in its events or snapshot', async () => {
    for (const [name, shape] of Object.entries(shapes)) {
      const bus = createBus();
      const events: HoldfastEvent[] = [];
      bus.on('*', (e) => events.push(e));
      const breaker = circuitBreaker({
        name: shape('S3CRpolicy1'),
        consecutiveFailures: 1,
        bus,
        policies: false,
        clock: new ManualClock(),
      });
      await breaker.execute(() => Promise.reject(new Error('down'))).catch(() => {});
      const text = JSON.stringify([events, breaker.snapshot(), breaker.name]);
      expect(text, name).not.toContain('S3CRpolicy1');
      breaker.dispose();
    }
  });

  it("an ejection's reason a user wrote shows no secret in the event or the set's snapshot", () => {
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('failover.eject', (e) => events.push(e));
    const set = failover({ name: 'db', endpoints: ['a', 'b'], bus, policies: false });
    for (const [name, shape] of Object.entries(shapes)) {
      expect(set.eject('a', { durationMs: 60_000, reason: shape('S3CRreason1').slice(0, 100) })).toBe(true);
      const text = JSON.stringify([events, set.snapshot()]);
      expect(text, name).not.toContain('S3CRreason1');
      set.restore('a');
    }
    set.dispose();
  });
});

const servers: Server[] = [];
const closes: (() => void)[] = [];
afterEach(async () => {
  for (const c of closes.splice(0)) c();
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function serve(handler: Parameters<typeof createServer>[1]): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** The text of the first `change` event on `<url>`, after `act()` has run. */
async function firstChange(url: string, act: () => void): Promise<string> {
  const abort = new AbortController();
  const res = await fetch(url, { signal: abort.signal });
  const reader = (res.body as ReadableStream<Uint8Array>).pipeThrough(new TextDecoderStream()).getReader();
  let text = '';
  const deadline = Date.now() + 5_000;
  let acted = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done || Date.now() > deadline) throw new Error(`no change event: ${text}`);
      text += value;
      if (!acted && text.includes('event: snapshot')) {
        acted = true;
        act();
      }
      const at = text.indexOf('event: change');
      if (at !== -1 && text.indexOf('\n\n', at) !== -1) return text.slice(at, text.indexOf('\n\n', at));
    }
  } finally {
    abort.abort();
  }
}

describe('dashboard over HTTP: secrets in names, messages and events', () => {
  it('/snapshot and /events show no secret of any shape, whatever carries it', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const dash = dashboard({ bus, policies, path: '/d', interval: 60_000 });
    closes.push(() => dash.close());
    const base = await serve(dash);
    const held: object[] = [];
    for (const [name, shape] of Object.entries(shapes)) {
      const secretOf = `S3CR${name}`;
      // A policy named with it, a user's own snapshot holding it in a message.
      const breaker = circuitBreaker({ name: shape(`${secretOf}n`), bus, policies });
      const source = { snapshot: () => ({ lastError: `connect failed: ${shape(`${secretOf}m`)} (retrying)` }) };
      held.push(breaker, source);
      closes.push(policies.register('pool', `pool-${name}`, source), () => breaker.dispose());
    }
    const snapshot = await (await fetch(`${base}/d/snapshot`)).text();
    for (const name of Object.keys(shapes)) {
      expect(snapshot, `${name} in /snapshot`).not.toContain(`S3CR${name}`);
    }
    // An event on the page's change log: an ejection whose reason a user wrote.
    const set = failover({ name: 'db', endpoints: ['a', 'b'], bus, policies: false });
    closes.push(() => set.dispose());
    for (const [name, shape] of Object.entries(shapes)) {
      const reason = shape(`S3CR${name}e`).slice(0, 100);
      const change = await firstChange(`${base}/d/events`, () => set.eject('a', { durationMs: 60_000, reason }));
      expect(change, `${name} in /events`).not.toContain(`S3CR${name}`);
      set.restore('a');
    }
    expect(held.length).toBeGreaterThan(0);
  });

  it("a user's own policy that emits on the bus with a name it did not hide: the page does not show the secret", async () => {
    const bus = createBus();
    const dash = dashboard({ bus, policies: createPolicyRegistry(), path: '/d', interval: 60_000 });
    closes.push(() => dash.close());
    const base = await serve(dash);
    const source = 'orders-db password: S3CRownpolicy';
    bus.emit({ type: 'breaker.success', source, time: 1, latency: 5 } as HoldfastEvent);
    bus.emit({ type: 'breaker.open', source, time: 2, reason: 'manual' } as unknown as HoldfastEvent);
    bus.emit({ type: 'retry.attempt', source, time: 3, attempt: 2, delay: 0, code: undefined } as HoldfastEvent);
    const snapshot = await (await fetch(`${base}/d/snapshot`)).text();
    expect(snapshot).not.toContain('S3CRownpolicy');
    expect(JSON.parse(snapshot).breakers.map((b: { name: string }) => b.name)).toEqual(['orders-db password: ***']);
  });

  it('a name or a message holding an image digest, a plain URL or an e-mail address is served as it is', async () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const dash = dashboard({ bus, policies, path: '/d', interval: 60_000 });
    closes.push(() => dash.close());
    const base = await serve(dash);
    const digest = `sha256:${'ab12'.repeat(16)}`;
    const texts = [
      `nginx:1.25@${digest}`,
      `localhost:5000/team/app:v2@${digest}`,
      'ops-team@example.com',
      'https://api.example.com/v1?page=2',
    ];
    const source = { snapshot: () => ({ images: texts }) };
    closes.push(policies.register('deploy', 'images', source));
    const breakers = texts.map((name) => circuitBreaker({ name, bus, policies }));
    closes.push(() => {
      for (const b of breakers) b.dispose();
    });
    const snapshot = JSON.parse(await (await fetch(`${base}/d/snapshot`)).text());
    expect(snapshot.breakers.map((b: { name: string }) => b.name)).toEqual(texts);
    expect(snapshot.others).toEqual([{ kind: 'deploy', name: 'images', snapshot: { images: texts } }]);
  });
});
