import { createServer, IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { memoryStore } from '../src/index.js';
import { closeAll, listenNode } from './http-support/body-apps.js';
import { newKey } from './http-support/support.js';

// What the middleware costs every guarded request of an Express app, measured by what it reads
// of the objects Node and Express make per request: load-independent, unlike a timing. Express
// gives each request and response a map of its own, so each property name read on one that its
// own object lacks is a slow lookup along its prototype chain (a megamorphic miss, and a getter
// then misses again inside). Each one here was found costing instructions under callgrind
// (issue #19); the middleware's guarantees are tested elsewhere.

afterEach(closeAll);

const body = JSON.stringify({ amount: 4200, currency: 'eur' });

/** Node's stream getters a request inherits, and the response's `headersSent`. */
const REQUEST_GETTERS = ['readableEnded', 'destroyed', 'readableHighWaterMark'] as const;
const RESPONSE_GETTERS = ['headersSent'] as const;

/**
 * Counts reads of the getters above on requests and responses while `run` runs: each is
 * shadowed on IncomingMessage/ServerResponse's prototype by one that counts and calls Node's.
 */
async function countingReads(run: () => Promise<void>): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  const undo: (() => void)[] = [];
  const shadow = (proto: object, from: object, name: string) => {
    const own = Object.getOwnPropertyDescriptor(from, name);
    const get = own?.get;
    if (get === undefined) throw new Error(`no getter ${name}`);
    Object.defineProperty(proto, name, {
      configurable: true,
      get(this: unknown) {
        counts[name] = (counts[name] ?? 0) + 1;
        return get.call(this);
      },
      set: own?.set,
    });
    undo.push(() => delete (proto as Record<string, unknown>)[name]);
  };
  for (const name of REQUEST_GETTERS) shadow(IncomingMessage.prototype, Readable.prototype, name);
  const outgoing = Object.getPrototypeOf(ServerResponse.prototype) as object;
  for (const name of RESPONSE_GETTERS) shadow(ServerResponse.prototype, outgoing, name);
  try {
    await run();
  } finally {
    for (const u of undo) u();
  }
  return counts;
}

/** `answers`: an app that answers before any parser, without reading the body (what a replay does). */
async function app(guarded: boolean | 'answers'): Promise<number> {
  const a = express();
  if (guarded === 'answers') a.use((_req, res) => res.status(201).json({ ok: true }));
  if (guarded === true) a.use(idempotency({ store: memoryStore(), scope: 'global' }));
  a.use(express.json());
  a.post('/orders', (req, res) => {
    res.status(201).json({ ok: true, body: req.body });
  });
  return listenNode(createServer(a));
}

async function post(port: number, key: string | undefined): Promise<number> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (key !== undefined) headers['idempotency-key'] = key;
  const response = await fetch(`http://127.0.0.1:${port}/orders`, { method: 'POST', headers, body });
  await response.text();
  return response.status;
}

/**
 * What `measure` finds for one request to each of a bare app, one that answers before any parser,
 * and a guarded one, first with a key and then again (a replay).
 */
async function fourRequests<T>(
  measure: (run: () => Promise<void>) => Promise<T>,
): Promise<{ bare: T; answers: T; first: T; replay: T }> {
  const bare = await app(false);
  const answers = await app('answers');
  const guarded = await app(true);
  const key = newKey();
  const one = (port: number) =>
    measure(async () => {
      expect(await post(port, key)).toBe(201);
    });
  return { bare: await one(bare), answers: await one(answers), first: await one(guarded), replay: await one(guarded) };
}

describe('express middleware: what every guarded request pays for it', () => {
  /**
   * The request's stream state is read from `_readableState` (its own property), not through
   * Readable's getters (`readableEnded`, `destroyed`, `readableHighWaterMark`), and whether a
   * response began from Node's own `_header`, not through `headersSent`: each getter read on an
   * Express request or response was two slow lookups a request.
   */
  it('a first request reads no stream getter of its request or response that a bare app does not; a replay, none', async () => {
    const reads = await fourRequests(countingReads);
    const names = [...REQUEST_GETTERS, ...RESPONSE_GETTERS];
    const over = (reads: Record<string, number>, base: Record<string, number>) =>
      Object.fromEntries(names.map((n) => [n, (reads[n] ?? 0) - (base[n] ?? 0)]));
    const none = { readableEnded: 0, destroyed: 0, readableHighWaterMark: 0, headersSent: 0 };
    expect({ first: over(reads.first, reads.bare), replay: over(reads.replay, reads.answers) }).toEqual({
      first: none,
      replay: none,
    });
  });

  /**
   * Node's `req.headers` is a getter (it builds the object on first read), and on an Express
   * request, a map of its own, each read looks it up along the request's prototype chain: the
   * middleware read it six times a request, first or replay (the key, whether a body came (2), its
   * transfer-encoding and length, the view).
   */
  it('reads req.headers once a guarded request, first or replay, beyond what the app reads', async () => {
    // Node's getter cannot be redefined: it is shadowed on Express's request object, which every
    // app's requests inherit, by one that counts and calls Node's.
    const own = Object.getOwnPropertyDescriptor(IncomingMessage.prototype, 'headers');
    const get = own?.get;
    if (own === undefined || get === undefined) throw new Error('IncomingMessage.prototype.headers is not a getter');
    const shared = express.request as object;
    if (Object.hasOwn(shared, 'headers')) throw new Error('express.request has its own headers');
    let reads = 0;
    Object.defineProperty(shared, 'headers', {
      configurable: true,
      get(this: IncomingMessage) {
        reads++;
        return get.call(this);
      },
      set: own.set,
    });
    const count = async (run: () => Promise<void>): Promise<number> => {
      const before = reads;
      await run();
      return reads - before;
    };
    try {
      const counted = await fourRequests(count);
      expect({ first: counted.first - counted.bare, replay: counted.replay - counted.answers }).toEqual({
        first: 1,
        replay: 1,
      });
    } finally {
      delete (shared as { headers?: unknown }).headers;
    }
  });
});
