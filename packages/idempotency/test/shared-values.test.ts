import { createServer } from 'node:http';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { problemTypes, requestFingerprint } from '../src/http/index.js';
import { fingerprintOf, idempotent, memoryStore } from '../src/index.js';
import { closeAll, listenNode } from './http-support/body-apps.js';

/**
 * Parsed values that share their parts. Parsers with references (devalue, superjson, YAML's
 * anchors and aliases) give one object for each reference: a value of a few hundred bytes can
 * hold 2^40 paths to its leaves. Fingerprinted as a tree, such a body took time and memory
 * exponential in its size: one request any client could send took the process's whole heap
 * (red: "FATAL ERROR: Reached heap limit Allocation failed"). A value shared hashes as the same
 * value copied, and a form past its bound is refused (413; E_IDEMPOTENCY_VALUE for idempotent()).
 */
afterEach(closeAll);

/** A devalue-style parser: an array of values, where an array of numbers lists other values by index. */
function hydrate(text: string): unknown {
  const values = JSON.parse(text) as unknown[];
  const made = new Map<number, unknown>();
  const at = (i: number): unknown => {
    if (made.has(i)) return made.get(i);
    const raw = values[i];
    if (!Array.isArray(raw)) {
      made.set(i, raw);
      return raw;
    }
    const list: unknown[] = [];
    made.set(i, list);
    for (const j of raw as number[]) list.push(at(j));
    return list;
  };
  return at(0);
}

/** Value i is a pair of value i+1, `depth` times, then `leaf`: 2^depth leaves in a few hundred bytes. */
function doubling(depth: number, leaf: unknown): string {
  const values: unknown[] = [];
  for (let i = 0; i < depth; i++) values.push([i + 1, i + 1]);
  values.push(leaf);
  return JSON.stringify(values);
}

async function app() {
  const application = express();
  const ran: number[] = [];
  application.post(
    '/orders',
    express.text({ type: 'application/x-refs', limit: '1mb' }),
    (req, _res, next) => {
      req.body = hydrate(req.body as string);
      next();
    },
    idempotency({ store: memoryStore(), scope: 'global' }),
    (_req, res) => {
      ran.push(ran.length + 1);
      res.status(201).json({ ran: ran.length });
    },
  );
  application.use((error: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    res.status(500).json({ error: error.message });
  });
  return { port: await listenNode(createServer(application)), ran };
}

async function post(port: number, key: string, body: string) {
  const response = await fetch(`http://127.0.0.1:${port}/orders`, {
    method: 'POST',
    headers: { 'idempotency-key': key, 'content-type': 'application/x-refs' },
    body,
    signal: AbortSignal.timeout(10_000),
  });
  const type = response.headers.get('content-type') ?? '';
  return {
    status: response.status,
    replayed: response.headers.get('idempotent-replayed'),
    body: type.includes('json') ? ((await response.json()) as Record<string, unknown>) : await response.text(),
  };
}

describe('a parsed body that shares its parts', () => {
  it('2^12 paths: hashed as the tree it reads as, and replayed', async () => {
    const { port, ran } = await app();
    const first = await post(port, 'k1', doubling(12, 'alice'));
    expect(first.status).toBe(201);
    const again = await post(port, 'k1', doubling(12, 'alice'));
    expect([again.status, again.replayed]).toEqual([201, 'true']);
    expect((await post(port, 'k1', doubling(12, 'mallory'))).status).toBe(422);
    expect(ran).toEqual([1]);
  });

  it('2^40 paths in 300 bytes: 413 at once, the process alive, nothing run', async () => {
    const { port, ran } = await app();
    const body = doubling(40, 'alice');
    expect(body.length).toBeLessThan(400);
    const response = await post(port, 'k1', body);
    expect(response.status).toBe(413);
    expect((response.body as { type?: string }).type).toBe(problemTypes.tooLarge);
    // The key was never claimed: a body that fits is served under it.
    expect((await post(port, 'k1', doubling(3, 'alice'))).status).toBe(201);
    expect(ran).toEqual([1]);
  });

  it('one long string referred to thousands of times is refused with 413, not expanded', async () => {
    const { port, ran } = await app();
    // 100 kB once, then 3,000 references to it: 300 MB as a tree.
    const values: unknown[] = [Array.from({ length: 3000 }, () => 1), 'x'.repeat(100_000)];
    const response = await post(port, 'k2', JSON.stringify(values));
    expect(response.status).toBe(413);
    expect((response.body as { type?: string }).type).toBe(problemTypes.tooLarge);
    expect(ran).toEqual([]);
  });

  it('a value shared hashes as the same value copied; a tree as before', () => {
    const shape = (body: unknown) => ({ method: 'POST', url: '/', contentType: 'application/json', body, headers: [] });
    const leaf = { to: 'alice', at: new Map([['x', [1, 2]]]) };
    const shared = [leaf, { again: leaf }, leaf];
    const copied = [
      { to: 'alice', at: new Map([['x', [1, 2]]]) },
      { again: { to: 'alice', at: new Map([['x', [1, 2]]]) } },
      { to: 'alice', at: new Map([['x', [1, 2]]]) },
    ];
    expect(requestFingerprint(shape(shared))).toBe(requestFingerprint(shape(copied)));
    expect(requestFingerprint(shape(hydrate(doubling(5, 'alice'))))).toBe(
      requestFingerprint(shape(JSON.parse(JSON.stringify(hydrate(doubling(5, 'alice')))))),
    );
    // Still a cycle when it holds itself.
    const cycle: unknown[] = [1];
    cycle.push([cycle]);
    expect(() => requestFingerprint(shape(cycle))).toThrow(/holds itself/);
  });
});

describe('idempotent() with an input that shares its parts', () => {
  it('a shared value hashes as copied; 2^40 paths refused at once with E_IDEMPOTENCY_VALUE', async () => {
    const date = new Date(0);
    const bytes = new Uint8Array([1, 2]);
    const leaf = { date, bytes, list: [date] };
    expect(fingerprintOf([leaf, leaf])).toBe(
      fingerprintOf([
        { date: new Date(0), bytes: new Uint8Array([1, 2]), list: [new Date(0)] },
        { date: new Date(0), bytes: new Uint8Array([1, 2]), list: [new Date(0)] },
      ]),
    );
    expect(fingerprintOf(hydrate(doubling(10, 'alice')))).toBe(
      fingerprintOf(JSON.parse(JSON.stringify(hydrate(doubling(10, 'alice'))))),
    );
    const store = memoryStore();
    let runs = 0;
    const charge = idempotent(async (_input: unknown) => ++runs, { store, key: () => 'one' });
    await expect(charge(hydrate(doubling(40, 'alice')))).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_VALUE' });
    expect(runs).toBe(0);
    const cycle: Record<string, unknown> = {};
    cycle.self = [cycle];
    expect(() => fingerprintOf(cycle)).toThrow(/circular reference/);
    store.dispose();
  });

  it('an input nested 100,000 deep is fingerprinted, not a stack overflow', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(fingerprintOf(deep)).toMatch(/^[\w-]{43}$/);
  });
});
