import { ManualClock } from '@holdfast/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type Decision, HttpIdempotency, type RequestView } from '../src/http/index.js';
import { type IdempotencyStore, memoryStore } from '../src/index.js';
import { spy } from './http-support/support.js';

// Issue #19: a replay from a memoryStore through the middleware's calls without a promise copied
// a short body twice (the store's copy of the record, then the replay's) and its headers twice.
// A replay is the caller's own (a later layer may change it in place) with one copy of each.

afterEach(() => {
  vi.restoreAllMocks();
});

function view(key: string, method = 'POST'): RequestView {
  return {
    method,
    url: '/orders',
    headers: { 'content-type': 'application/json', 'idempotency-key': key },
    body: Buffer.from('{"n":1}'),
  };
}

function middleware(store: IdempotencyStore): HttpIdempotency<unknown> {
  return new HttpIdempotency<unknown>('test', {
    store,
    scope: 'global',
    clock: new ManualClock(1_000_000),
    replayHeaders: ['link'],
    methods: ['POST', 'HEAD'],
  });
}

async function complete(c: HttpIdempotency<unknown>, key: string, body: Buffer, method = 'POST'): Promise<void> {
  const d = await c.decideNow({}, view(key, method));
  if (d.action !== 'run') throw new Error(`expected a run, got ${d.action}`);
  d.run.body.add(body);
  await d.run.finish(201, { 'content-type': 'application/json', link: ['</a>; rel="a"', '</b>; rel="b"'] });
}

function replayed(d: Decision): { status: number; headers: Record<string, unknown>; body: Buffer } {
  if (d.action !== 'respond') throw new Error(`expected a replay, got ${d.action}`);
  return d.response as { status: number; headers: Record<string, unknown>; body: Buffer };
}

// Every byte value, each side of the size under which memoryStore keeps a body as a string.
const bodies = [1, 16, 96, 97, 300].map((n) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 89 + n) % 256)));

describe('a replay from memoryStore, through the calls without a promise', () => {
  it('copies its body once, short or long', async () => {
    const c = middleware(memoryStore());
    const counts: number[] = [];
    for (const [i, body] of bodies.entries()) {
      await complete(c, `k${i}`, body);
      replayed(c.decideNow({}, view(`k${i}`)) as Decision); // the first replay (a record may cache its answer)
      const request = view(`k${i}`);
      const from = vi.spyOn(Buffer, 'from');
      const replay = replayed(c.decideNow({}, request) as Decision);
      const decided = from.mock.calls.length;
      // Read twice: the same bytes, made once.
      expect(replay.body.equals(body)).toBe(true);
      expect(replay.body).toBe(replay.body);
      counts.push(from.mock.calls.length);
      from.mockRestore();
      // An ASCII body (one byte, 0x01) is replayed as its text: its bytes are made only when read.
      if (body.length === 1) expect(decided).toBe(0);
      expect(replay.headers['content-length']).toBe(String(body.length));
    }
    expect(counts).toEqual(bodies.map(() => 1));
  });

  for (const [name, make] of [
    ['memoryStore (no promise)', () => memoryStore()],
    ['spy(memoryStore()) (async)', () => spy(memoryStore())],
  ] as const) {
    it(`${name}: what a caller does to a replay, body or headers, short or long, changes no later replay`, async () => {
      const c = middleware(make());
      for (const [i, body] of bodies.entries()) {
        await complete(c, `m${i}`, body);
        for (let round = 0; round < 3; round++) {
          const replay = replayed(await c.decideNow({}, view(`m${i}`)));
          expect(replay.body.equals(body)).toBe(true);
          expect(replay.headers.link).toEqual(['</a>; rel="a"', '</b>; rel="b"']);
          expect(replay.headers['content-type']).toBe('application/json');
          expect(replay.headers['idempotent-replayed']).toBe('true');
          replay.body.fill(0x58);
          (replay.headers.link as string[]).push('</evil>; rel="evil"');
          (replay.headers.link as string[])[0] = '</evil>';
          replay.headers['content-type'] = 'text/evil';
          replay.headers['content-length'] = '0';
          delete replay.headers['idempotent-replayed'];
        }
      }
    });
  }

  it("a HEAD replay keeps the length its first response sent, and is the caller's own", async () => {
    const c = middleware(memoryStore());
    for (const [i, body] of bodies.entries()) {
      await complete(c, `h${i}`, body, 'HEAD');
      for (let round = 0; round < 2; round++) {
        const replay = replayed(c.decideNow({}, view(`h${i}`, 'HEAD')) as Decision);
        expect(replay.headers['content-length']).toBe(String(body.length));
        expect(replay.body.equals(body)).toBe(true);
        replay.body.fill(0);
      }
    }
  });
});
