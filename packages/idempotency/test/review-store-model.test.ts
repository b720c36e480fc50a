/**
 * Outside review: a model-based test of memoryStore() (src/memory-store.ts). A reference model,
 * written from the store's documented contract, is run beside a real store on a ManualClock
 * through generated sequences of public (async, text tokens) and in-process (StoreNow, number
 * tokens) calls; after every step the store's size and bytes must be the model's, and every
 * answer (claimed / completed replay / inProgress / mismatch, true / false, throws) the model's.
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { ManualClock } from '@holdfast/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeValue, encodeValue } from '../src/codec.js';
import { type KeptRecord, keptBodyOf, memoryStore } from '../src/memory-store.js';
import type { StoredOutcome } from '../src/store.js';
import { nowOf } from './memory-store-support.js';

type Headers = Record<string, string | string[]>;

// ---------------------------------------------------------------------------------------------
// Reference model
// ---------------------------------------------------------------------------------------------

const digest = (preimage: string): string =>
  createHash('sha256').update(Buffer.from(preimage, 'latin1')).digest('base64url');

function chars(headers: Headers): number {
  let n = 2;
  for (const [name, v] of Object.entries(headers)) {
    if (typeof v === 'string') n += name.length + v.length + 6;
    else n += name.length + 6 + v.reduce((s, item) => s + item.length + 3, 0);
  }
  return n;
}

type Kept =
  | { kind: 'value'; value: unknown }
  | { kind: 'aborted' }
  | { kind: 'response'; status: number; headers: Headers; body: string /* latin1 */ };

interface MEntry {
  key: string;
  s: string; // fingerprint, or (raw) preimage
  raw: boolean;
  token: number;
  leaseUntil: number;
  expiresAt: number;
  kept: Kept | undefined;
  bytes: number;
}

function sameRequest(a: string, aRaw: boolean, b: string, bRaw: boolean): boolean {
  if (aRaw === bRaw) return a === b;
  return aRaw ? digest(a) === b : a === digest(b);
}

class Model {
  entries = new Map<string, MEntry>();
  order: string[] = []; // recency, least recently used first
  tokens = 0;
  now = 0;
  sweepDue: number | undefined;
  disposed = false;
  constructor(
    readonly maxEntries: number,
    readonly maxBytes: number,
    readonly sweepInterval: number,
  ) {}

  get size(): number {
    return this.entries.size;
  }
  get bytes(): number {
    let b = 0;
    for (const e of this.entries.values()) b += e.bytes;
    return b;
  }
  remove(key: string): void {
    this.entries.delete(key);
    this.order = this.order.filter((k) => k !== key);
  }
  live(key: string): MEntry | undefined {
    const e = this.entries.get(key);
    if (e !== undefined && e.expiresAt <= this.now) {
      this.remove(key);
      return undefined;
    }
    return e;
  }
  touch(key: string): MEntry | undefined {
    const e = this.live(key);
    if (e !== undefined) this.order = [...this.order.filter((k) => k !== key), key];
    return e;
  }
  dropExpired(): void {
    for (const [k, e] of [...this.entries]) if (e.expiresAt <= this.now) this.remove(k);
  }
  running(e: MEntry): boolean {
    return e.kept === undefined && e.leaseUntil > this.now && e.expiresAt > this.now;
  }
  /**
   * Contract: expired first, then the least recently used that is not a running claim (a running
   * claim passed over stays where it is in the recency order).
   */
  makeRoom(): 'full' | undefined {
    if (this.size >= this.maxEntries) this.dropExpired();
    for (const k of [...this.order]) {
      if (this.size < this.maxEntries) break;
      if (!this.running(this.entries.get(k) as MEntry)) this.remove(k);
    }
    return this.size >= this.maxEntries ? 'full' : undefined;
  }
  /** Contract: expired first, then least recently used completed (or lease run out), never `keep`. */
  evictBytes(keep: string): void {
    if (this.bytes > this.maxBytes) this.dropExpired();
    for (const k of [...this.order]) {
      if (this.bytes <= this.maxBytes) break;
      const e = this.entries.get(k) as MEntry;
      if (k !== keep && (e.kept !== undefined || e.expiresAt <= this.now || e.leaseUntil <= this.now)) this.remove(k);
    }
  }
  claim(
    key: string,
    s: string,
    raw: boolean,
    lease: number,
  ):
    | { status: 'claimed'; token: number; takeover: boolean }
    | { status: 'completed'; entry: MEntry }
    | { status: 'inProgress'; retryAfterMs: number }
    | { status: 'mismatch' }
    | { status: 'full' } {
    const e = this.touch(key);
    if (e === undefined) {
      if (this.makeRoom() === 'full') return { status: 'full' };
      const token = ++this.tokens;
      const entry: MEntry = {
        key,
        s,
        raw,
        token,
        leaseUntil: this.now + lease,
        expiresAt: this.now + 2 * lease,
        kept: undefined,
        bytes: 256 + 2 * (key.length + (raw ? 43 : s.length)) + 16,
      };
      this.entries.set(key, entry);
      this.order.push(key);
      if (this.bytes > this.maxBytes) this.evictBytes(key);
      if (this.sweepDue === undefined) this.sweepDue = this.now + this.sweepInterval;
      return { status: 'claimed', token, takeover: false };
    }
    if (!sameRequest(e.s, e.raw, s, raw)) return { status: 'mismatch' };
    if (e.kept !== undefined) return { status: 'completed', entry: e };
    if (e.leaseUntil > this.now) return { status: 'inProgress', retryAfterMs: e.leaseUntil - this.now };
    e.token = ++this.tokens;
    e.leaseUntil = this.now + lease;
    e.expiresAt = this.now + 2 * lease;
    return { status: 'claimed', token: e.token, takeover: true };
  }
  complete(key: string, token: number, kept: Kept, keptBytes: number, ttl: number): boolean | 'tooBig' {
    const e = this.live(key);
    if (e?.kept !== undefined && e.token === token) return true;
    if (e === undefined || e.kept !== undefined || e.token !== token) return false;
    if (e.bytes + keptBytes > this.maxBytes) return 'tooBig';
    e.kept = kept;
    e.bytes += keptBytes;
    e.expiresAt = this.now + ttl;
    this.evictBytes(key);
    return true;
  }
  release(key: string, token: number): boolean {
    const e = this.live(key);
    if (e === undefined || e.kept !== undefined || e.token !== token) return false;
    this.remove(key);
    return true;
  }
  extend(key: string, token: number, lease: number): boolean {
    const e = this.live(key);
    if (e === undefined || e.kept !== undefined || e.token !== token) return false;
    e.leaseUntil = Math.max(e.leaseUntil, this.now + lease);
    e.expiresAt = Math.max(e.expiresAt, this.now + 2 * lease);
    return true;
  }
  completed(key: string): MEntry | undefined {
    if (!this.entries.has(key)) return undefined;
    const e = this.touch(key);
    return e?.kept === undefined ? undefined : e;
  }
  advance(ms: number): void {
    const target = this.now + ms;
    while (this.sweepDue !== undefined && this.sweepDue <= target) {
      this.now = this.sweepDue;
      this.sweepDue = undefined;
      this.dropExpired();
      if (this.size > 0) this.sweepDue = this.now + this.sweepInterval;
    }
    this.now = target;
  }
}

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

const KEYS = ['a', 'b', 'c', 'dd'];
// Preimages over a tiny alphabet (prefixes of each other and of preimage + body text are common).
const ALPHA = ['x', 'y', '\u00e9'];
const text = (max: number) => fc.array(fc.constantFrom(...ALPHA), { maxLength: max }).map((a) => a.join(''));
const HEADERS: Headers[] = [
  {},
  { 'content-type': 'text/plain' },
  { etag: '"v1"', link: ['a', 'b'] },
  { 'content-type': 'text/plain', etag: 'x' },
  { __proto__x: 'y' } as Headers,
];
const VALUES: unknown[] = [{ id: 1, n: '\u00e9' }, 'x', null, [1, 2], 0, 'y'.repeat(60), '\u20ac\u{1f600}'];

type Req = { p: string; form: 'raw' | 'digest' | 'plain' | 'wide'; again: boolean };
type TokSel = { which: 'current' | 'issued' | 'bogus'; i: number; form: 'num' | 'text' };
type Body = { form: 'str' | 'u8' | 'u8off'; content: string };
type Out =
  | { kind: 'value'; v: number }
  | { kind: 'aborted' }
  | { kind: 'response'; status: number; h: number; body: Body; fast: boolean };

type Op =
  | { t: 'claim'; pub: boolean; key: string; req: Req; lease: number }
  | { t: 'complete'; pub: boolean; key: string; tok: TokSel; out: Out; ttl: number }
  | { t: 'release'; pub: boolean; key: string; tok: TokSel }
  | { t: 'extend'; pub: boolean; key: string; tok: TokSel; lease: number }
  | { t: 'completed'; key: string }
  | { t: 'advance'; ms: number }
  | { t: 'dispose' };

// '@last': the key of the last claim made (so completions and replays find their claims).
const key = fc.constantFrom(...KEYS, '@last', '@last', '@last', '@last');
const req = fc.record({
  p: fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom('x', 'xy', 'xy\u00e9', 'xyx') },
    { weight: 1, arbitrary: text(4) },
  ),
  form: fc.constantFrom<Req['form']>('raw', 'raw', 'digest', 'plain', 'wide'),
  again: fc.boolean(),
});
const tok = fc.record({
  which: fc.constantFrom<TokSel['which']>('current', 'current', 'current', 'current', 'issued', 'bogus'),
  i: fc.nat(20),
  form: fc.constantFrom<TokSel['form']>('num', 'text'),
});
const bodyArb = fc.record({
  form: fc.constantFrom<Body['form']>('str', 'u8', 'u8off'),
  content: fc.oneof(
    { weight: 5, arbitrary: fc.oneof(text(4), fc.constantFrom('x', 'y', 'xy', '\u00e9')) },
    { weight: 1, arbitrary: fc.integer({ min: 95, max: 98 }).map((n) => 'x\u00ff'.repeat(n).slice(0, n)) },
  ),
});
const out: fc.Arbitrary<Out> = fc.oneof(
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('value' as const), v: fc.nat(VALUES.length - 1) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('aborted' as const) }) },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('response' as const),
      status: fc.constantFrom(200, 201, 404),
      h: fc.nat(HEADERS.length - 1),
      body: bodyArb,
      fast: fc.boolean(),
    }),
  },
);
const lease = fc.constantFrom(10, 20);
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 120, arbitrary: fc.record({ t: fc.constant('claim' as const), pub: fc.boolean(), key, req, lease }) },
  {
    weight: 100,
    arbitrary: fc.record({
      t: fc.constant('complete' as const),
      pub: fc.boolean(),
      key,
      tok,
      out,
      ttl: fc.constantFrom(5, 15, 40),
    }),
  },
  { weight: 20, arbitrary: fc.record({ t: fc.constant('release' as const), pub: fc.boolean(), key, tok }) },
  { weight: 20, arbitrary: fc.record({ t: fc.constant('extend' as const), pub: fc.boolean(), key, tok, lease }) },
  { weight: 20, arbitrary: fc.record({ t: fc.constant('completed' as const), key }) },
  {
    weight: 60,
    arbitrary: fc.record({ t: fc.constant('advance' as const), ms: fc.constantFrom(0, 1, 5, 9, 10, 11, 20, 40) }),
  },
  { weight: 1, arbitrary: fc.constant({ t: 'dispose' as const }) },
);
const config = fc.record({
  maxEntries: fc.oneof(fc.integer({ min: 1, max: 3 }), fc.constant(50)),
  // A claim of key 'a' with a 4-char fingerprint is 288 bytes; a small response, 20 more and its body.
  maxBytes: fc.oneof(fc.integer({ min: 270, max: 1000 }), fc.constant(67_108_864)),
  sweepInterval: fc.constantFrom(7, 1_000_000),
});

// ---------------------------------------------------------------------------------------------
// Runner
// ---------------------------------------------------------------------------------------------

function bytesOf(body: Body): Uint8Array {
  const buf = Buffer.from(body.content, 'latin1');
  if (body.form === 'u8') return new Uint8Array(buf);
  const big = new Uint8Array(buf.length + 6).fill(0xaa);
  big.set(buf, 3);
  return big.subarray(3, 3 + buf.length);
}
const freshHeaders = (h: number): Headers => structuredClone(HEADERS[h] as Headers);
const asLatin1 = (b: Uint8Array | string): string =>
  typeof b === 'string' ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');

function checkKept(record: KeptRecord, kept: Kept, where: string): void {
  expect(record.kind, where).toBe(kept.kind);
  const body = keptBodyOf(record);
  if (kept.kind === 'value') expect(decodeValue(body as string), where).toEqual(kept.value);
  if (kept.kind === 'aborted') expect(asLatin1(body), where).toBe('');
  if (kept.kind === 'response') {
    expect(record.status, where).toBe(kept.status);
    expect({ ...record.headers }, where).toEqual(kept.headers);
    expect(asLatin1(body), where).toBe(kept.body);
  }
}

function checkHandedOut(outcome: StoredOutcome, kept: Kept, where: string): void {
  expect(outcome.kind, where).toBe(kept.kind);
  if (kept.kind === 'value' && outcome.kind === 'value') expect(outcome.value, where).toEqual(kept.value);
  if (kept.kind === 'response' && outcome.kind === 'response') {
    expect(outcome.status, where).toBe(kept.status);
    expect({ ...outcome.headers }, where).toEqual(kept.headers);
    expect(asLatin1(outcome.body), where).toBe(kept.body);
    // The copy is the caller's: changing it changes no record (later replays are checked).
    if (outcome.body.byteLength > 0) (outcome.body as Uint8Array).fill(0x7e, 0, 1);
    (outcome.headers as Headers)['x-mutated'] = 'yes';
    for (const v of Object.values(outcome.headers)) if (Array.isArray(v)) v.push('z');
  }
}

async function run(cfg: { maxEntries: number; maxBytes: number; sweepInterval: number }, ops: Op[]): Promise<void> {
  const clock = new ManualClock(1_000_000);
  const store = memoryStore({ clock, ...cfg });
  const now = nowOf(store);
  const model = new Model(cfg.maxEntries, cfg.maxBytes, cfg.sweepInterval);
  const issued: number[] = [];
  const current = new Map<string, number>();
  try {
    let lastKey = 'a';
    const lastReq = new Map<string, Req>();
    for (const [step, op0] of ops.entries()) {
      // Resolve '@last' and a request made again.
      let o = op0;
      if ('key' in o && o.key === '@last') o = { ...o, key: lastKey };
      if (o.t === 'claim') {
        if (o.req.again && lastReq.has(o.key)) o = { ...o, req: lastReq.get(o.key) as Req };
        lastKey = o.key;
        lastReq.set(o.key, o.req);
      }
      const where = `step ${step}: ${JSON.stringify(o)}`;
      const disposedErr = (e: unknown) => (e as Error).name === 'DisposedError';
      if (model.disposed && o.t !== 'advance' && o.t !== 'dispose') {
        let threw: unknown;
        try {
          if (o.t === 'claim') await store.claim(o.key, 'fp', 10);
          else if (o.t === 'completed') now.completed(o.key);
          else now.release(o.key, 1);
        } catch (e) {
          threw = e;
        }
        expect(disposedErr(threw), where).toBe(true);
        continue;
      }
      switch (o.t) {
        case 'advance':
          model.advance(o.ms);
          await clock.advance(o.ms);
          break;
        case 'dispose':
          store.dispose();
          model.disposed = true;
          model.sweepDue = undefined;
          model.entries.clear();
          model.order = [];
          break;
        case 'completed': {
          const expected = model.completed(o.key);
          const got = now.completed(o.key);
          stat(`completed ${expected === undefined ? 'none' : 'found'}`);
          expect(got === undefined, where).toBe(expected === undefined);
          if (got && expected) checkKept(got, expected.kept as Kept, where);
          break;
        }
        case 'claim': {
          const form = o.pub && o.req.form === 'raw' ? 'digest' : o.req.form;
          const raw = form === 'raw';
          // 'wide': a fingerprint as any text a store is handed (not bytes).
          const s = form === 'digest' ? digest(o.req.p) : form === 'wide' ? `${o.req.p}\u20ac` : o.req.p;
          const expected = model.claim(o.key, s, raw, o.lease);
          let got: { status: string; token?: number | string; retryAfterMs?: number; takeover?: boolean } & Record<
            string,
            unknown
          >;
          try {
            got = o.pub
              ? ((await store.claim(o.key, s, o.lease)) as never)
              : ((raw ? now.claimPreimage(o.key, s, o.lease) : now.claim(o.key, s, o.lease)) as never);
          } catch (e) {
            expect({ where, name: (e as Error).name }).toEqual({ where, name: 'StoreUnavailableError' });
            expect(expected.status, where).toBe('full');
            break;
          }
          expect(got.status, where).toBe(expected.status);
          stat(`claim ${expected.status}${'takeover' in expected && expected.takeover ? ' takeover' : ''}`);
          if (expected.status === 'claimed') {
            expect(got.token, where).toBe(o.pub ? `m${expected.token}` : expected.token);
            expect(got.takeover, where).toBe(expected.takeover);
            issued.push(expected.token);
            current.set(o.key, expected.token);
          } else if (expected.status === 'inProgress') {
            expect(got.retryAfterMs, where).toBe(expected.retryAfterMs);
          } else if (expected.status === 'completed') {
            const kept = expected.entry.kept as Kept;
            if (o.pub) {
              const record = got.record as { key: string; fingerprint: string; outcome: StoredOutcome };
              expect(record.key, where).toBe(o.key);
              expect(record.fingerprint, where).toBe(expected.entry.raw ? digest(expected.entry.s) : expected.entry.s);
              checkHandedOut(record.outcome, kept, where);
            } else checkKept(got.record as KeptRecord, kept, where);
          }
          break;
        }
        case 'complete':
        case 'release':
        case 'extend': {
          const n =
            o.tok.which === 'current'
              ? (current.get(o.key) ?? issued[issued.length - 1] ?? 1)
              : o.tok.which === 'issued'
                ? (issued[o.tok.i % Math.max(1, issued.length)] ?? 1)
                : ([0, model.tokens + 1, 1e21][o.tok.i % 3] as number);
          const token: number | string = o.tok.form === 'num' ? n : `m${n}`;
          // The public methods take text only; a number is no claim's there.
          const claimNo = o.pub && typeof token === 'number' ? -1 : n;
          if (o.t === 'release') {
            const expected = model.release(o.key, claimNo);
            const got = o.pub ? await store.release(o.key, token as string) : now.release(o.key, token);
            expect(got, where).toBe(expected);
            break;
          }
          if (o.t === 'extend') {
            const expected = model.extend(o.key, claimNo, o.lease);
            const got = o.pub ? await store.extend(o.key, token as string, o.lease) : now.extend(o.key, token, o.lease);
            expect(got, where).toBe(expected);
            break;
          }
          // complete
          let kept: Kept;
          let keptBytes: number;
          let call: () => boolean | Promise<boolean>;
          let after = () => {};
          const x = o.out;
          if (x.kind === 'value') {
            const value = structuredClone(VALUES[x.v]);
            kept = { kind: 'value', value: structuredClone(value) };
            keptBytes = 2 * encodeValue(value).length;
            const outcome: StoredOutcome = { kind: 'value', value };
            call = o.pub
              ? () => store.complete(o.key, token as string, outcome, o.ttl)
              : () => now.complete(o.key, token, outcome, o.ttl);
          } else if (x.kind === 'aborted') {
            kept = { kind: 'aborted' };
            keptBytes = 16;
            call = o.pub
              ? () => store.complete(o.key, token as string, { kind: 'aborted' }, o.ttl)
              : () => now.complete(o.key, token, { kind: 'aborted' }, o.ttl);
          } else {
            const headers = freshHeaders(x.h);
            kept = { kind: 'response', status: x.status, headers: freshHeaders(x.h), body: x.body.content };
            keptBytes = 2 * chars(headers) + 16 + x.body.content.length;
            if (!o.pub && x.fast) {
              // The middleware's call: handed over (not touched after).
              const body = x.body.form === 'str' ? x.body.content : bytesOf(x.body);
              call = () => now.completeResponse(o.key, token, x.status, headers, body, o.ttl);
            } else {
              const body = bytesOf(x.body);
              const outcome: StoredOutcome = { kind: 'response', status: x.status, headers, body };
              call = o.pub
                ? () => store.complete(o.key, token as string, outcome, o.ttl)
                : () => now.complete(o.key, token, outcome, o.ttl);
              // The caller keeps its objects, and may change them.
              after = () => {
                body.fill(0x21);
                headers['x-later'] = 'changed';
                for (const v of Object.values(headers)) if (Array.isArray(v)) v.push('q');
              };
            }
          }
          const expected = model.complete(o.key, claimNo, kept, keptBytes, o.ttl);
          let got: boolean | string;
          try {
            got = await call();
          } catch (e) {
            got = (e as Error).name === 'IdempotencyValueError' ? 'tooBig' : `threw ${(e as Error).message}`;
          }
          after();
          stat(`complete ${String(expected)}`);
          expect(got, where).toBe(expected);
          break;
        }
      }
      expect({ where, size: store.size, bytes: store.bytes }).toEqual({ where, size: model.size, bytes: model.bytes });
      // The sweep timer: one while records are kept, none after dispose.
      expect({ where, pending: clock.pending }).toEqual({
        where,
        pending: !model.disposed && model.sweepDue !== undefined ? 1 : 0,
      });
    }
  } finally {
    store.dispose();
  }
}

const RUNS = Number(process.env.REVIEW_RUNS ?? 1500);
export const STATS: Record<string, number> = {};
const stat = (k: string) => {
  STATS[k] = (STATS[k] ?? 0) + 1;
};

describe('memoryStore() against a reference model (outside review)', () => {
  it('answers, replays, limits and counts bytes as the model says, over mixed public and in-process calls', async () => {
    await fc.assert(
      fc.asyncProperty(config, fc.array(op, { minLength: 1, maxLength: 60, size: 'max' }), (cfg, ops) => run(cfg, ops)),
      { numRuns: RUNS },
    );
    if (process.env.REVIEW_STATS) console.log(STATS);
  }, 60_000);
});

describe('memoryStore() eviction order when full (outside review)', () => {
  // makeRoom() passed over a running claim by moving it to the most recently used end of the
  // recency list, as if it had been used. Once its lease ran out (its owner gone), it stood
  // ahead of completed records used after it, and they were evicted first. Contract (options.ts,
  // maxEntries): "When full, expired records go first, then the least recently used, even before
  // its ttl; a record whose lease is still running is never evicted." Here `c` is the least
  // recently used and not running: it goes, and `r2` (used after it, ttl far from over) still
  // replays. (Failed before the fix: r2's repeat was claimed, and ran its effect again.)
  it('a claim passed over while running does not outlive a completed record used after it', async () => {
    const clock = new ManualClock(0);
    const store = memoryStore({ clock, maxEntries: 3 });
    const claimed = async (key: string, leaseMs: number) => {
      const claim = await store.claim(key, 'fp', leaseMs);
      if (claim.status !== 'claimed') throw new Error(`${key}: ${claim.status}`);
      return claim.token;
    };
    await claimed('c', 10); // t=0: claimed, never completed (its owner died); lease ends at t=10
    await clock.advance(1);
    for (const key of ['r1', 'r2']) {
      // t=1: completed, kept for 1000 ms
      expect(await store.complete(key, await claimed(key, 10), { kind: 'value', value: key }, 1_000)).toBe(true);
    }
    await clock.advance(1);
    await claimed('n1', 100); // t=2: full; `c` runs, passed over (moved to the back); r1 evicted: right
    await clock.advance(13); // t=15: c's lease over (it expires at t=20); r2 has 986 ms of ttl left
    await claimed('n2', 100); // full: the least recently used record not running is `c` (used at t=0)
    expect(store.size).toBe(3);
    // r2 (used at t=1) must still replay; the store evicted it and kept the abandoned claim `c`.
    const r2 = await store.claim('r2', 'fp', 10);
    expect(r2.status).toBe('completed');
    store.dispose();
  });
});
