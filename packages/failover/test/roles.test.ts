import { HoldfastConfigError } from '@holdfast/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareTokens, failover, NoPrimaryError, type RoleReport } from '../src/index.js';
import { compareRedisTokens, redisClassify } from '../src/ioredis.js';
import { parseLsn, pgClassify } from '../src/pg.js';
import { harness } from './support.js';

/** A scripted server: what its role check answers, and what its calls do. */
interface Fake {
  name: string;
  report: RoleReport | 'down' | 'hang';
  checks: number;
  calls: string[];
  fail?: () => Error;
}

function cluster(...specs: [string, Fake['report']][]) {
  const nodes = new Map<string, Fake>(specs.map(([name, report]) => [name, { name, report, checks: 0, calls: [] }]));
  const node = (name: string) => nodes.get(name) as Fake;
  const check = async (e: { target: Fake }) => {
    e.target.checks++;
    const r = e.target.report;
    if (r === 'down') throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    if (r === 'hang') return new Promise<RoleReport>(() => {});
    return r;
  };
  const endpoints = [...nodes.values()].map((n) => ({ name: n.name, target: n }));
  return { node, check, endpoints };
}

const run = (intent: 'read' | 'write') => async (e: { target: Fake }) => {
  e.target.calls.push(intent);
  if (e.target.fail) throw e.target.fail();
  return e.target.name;
};

const primary = (token: unknown): RoleReport => ({ role: 'primary', token });
const replica = (lag = 0): RoleReport => ({ role: 'replica', token: [1, 0n], lag });

describe('roles: discovered, not configured', () => {
  it('sends writes to the primary and reads to the replicas, whatever the order of the endpoints', async () => {
    const { clock, bus, of } = harness();
    const c = cluster(['a', replica()], ['b', primary([1, 100n])], ['c', replica()]);
    const db = failover({ clock, bus, endpoints: c.endpoints, roles: { check: c.check, interval: 1_000 } });
    const first = db.execute(run('write'));
    await clock.advance(0);
    expect(await first).toBe('b');
    const reads = [];
    for (let i = 0; i < 6; i++) reads.push(await db.execute(run('read'), { intent: 'read' }));
    expect(new Set(reads)).toEqual(new Set(['a', 'c']));
    expect(c.node('b').calls).toEqual(['write']);
    expect(db.active?.name).toBe('b');
    expect(db.snapshot()).toMatchObject({
      primary: 'b',
      endpoints: [
        { name: 'a', discovered: 'replica' },
        { name: 'b', discovered: 'primary', token: '1/100' },
        { name: 'c', discovered: 'replica' },
      ],
    });
    expect(of('failover.role').map((e) => [e.endpoint, e.previous, e.role])).toEqual([
      ['a', 'unknown', 'replica'],
      ['b', 'unknown', 'primary'],
      ['c', 'unknown', 'replica'],
    ]);
    db.dispose();
  });

  it('fails writes fast with NoPrimaryError, carrying the cause, while reads keep flowing', async () => {
    const { clock, bus } = harness();
    const c = cluster(['a', primary([1, 5n])], ['b', replica()]);
    const db = failover({ clock, bus, endpoints: c.endpoints, roles: { check: c.check, interval: 1_000 } });
    await clock.advance(0);
    c.node('a').report = 'down';
    await clock.advance(1_000);
    await clock.advance(1_000); // two failed checks in a row: unreachable
    const error = await db.execute(run('write')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NoPrimaryError);
    expect(error).toMatchObject({
      code: 'E_NO_PRIMARY',
      roles: { a: 'unreachable', b: 'replica' },
      cause: { code: 'ECONNREFUSED' },
    });
    expect((error as Error).message).toBe(
      'failover: no primary to write to, the write was not sent (a: unreachable (ECONNREFUSED); b: replica)',
    );
    expect(c.node('a').calls).toEqual([]); // nothing was sent
    expect(await db.execute(run('read'), { intent: 'read' })).toBe('b');
    db.dispose();
  });

  it('picks a promotion up within one interval; the old primary rejoins as a replica and takes reads', async () => {
    const { clock, bus, of } = harness();
    const c = cluster(['a', primary([1, 5n])], ['b', replica()]);
    const db = failover({ clock, bus, endpoints: c.endpoints, roles: { check: c.check, interval: 1_000 } });
    await clock.advance(0);
    c.node('a').report = 'down';
    await clock.advance(2_000);
    c.node('b').report = primary([2, 6n]);
    await clock.advance(1_000);
    expect(await db.execute(run('write'))).toBe('b');
    expect(await db.execute(run('read'), { intent: 'read' })).toBe('b'); // no replica left: the primary reads
    c.node('a').report = replica();
    await clock.advance(1_000);
    expect(await db.execute(run('read'), { intent: 'read' })).toBe('a');
    expect(db.failback()).toBe(false); // the database decides who is primary, not the set
    expect(db.active?.name).toBe('b');
    expect(of('failover.role').map((e) => `${e.endpoint}:${e.previous}->${e.role}`)).toEqual([
      'a:unknown->primary',
      'b:unknown->replica',
      'a:primary->unreachable',
      'b:replica->primary',
      'a:unreachable->replica',
    ]);
    expect(of('failover.switch').map((e) => [e.from, e.to, e.reason])).toEqual([
      [undefined, 'a', 'failover'], // the first primary found
      ['a', 'b', 'failover'],
    ]);
    db.dispose();
  });

  it('fences a stale primary: writes only to the higher token, an event and a snapshot field say so', async () => {
    const { clock, bus, of } = harness();
    const c = cluster(['old', primary([1, 900n])], ['new', primary([2, 10n])]);
    const db = failover({ clock, bus, endpoints: c.endpoints, roles: { check: c.check } });
    const writes = Array.from({ length: 20 }, () => db.execute(run('write')));
    await clock.advance(0);
    expect(new Set(await Promise.all(writes))).toEqual(new Set(['new']));
    expect(c.node('old').calls).toEqual([]);
    expect(of('failover.fence')).toMatchObject([
      { endpoint: 'old', primary: 'new', token: '1/900', primaryToken: '2/10' },
    ]);
    expect(db.snapshot().endpoints[0]).toMatchObject({ name: 'old', discovered: 'fenced' });
    // Reads never go to a fenced node either: its data is from before the failover.
    for (let i = 0; i < 5; i++) expect(await db.execute(run('read'), { intent: 'read' })).toBe('new');
    db.dispose();
  });

  it('writes to neither of two primaries whose tokens tie', async () => {
    const { clock, bus } = harness();
    const c = cluster(['a', primary(undefined)], ['b', primary(undefined)]);
    const db = failover({ clock, bus, endpoints: c.endpoints, roles: { check: c.check } });
    const write = db.execute(run('write')).catch((e: unknown) => e);
    await clock.advance(0);
    expect(await write).toMatchObject({ code: 'E_NO_PRIMARY', roles: { a: 'fenced', b: 'fenced' } });
    expect((await write) as Error).toHaveProperty('message', expect.stringContaining('primaries tie'));
    db.dispose();
  });

  it('makes the first write of a new process wait for every endpoint to answer, within `wait`', async () => {
    const { clock, bus } = harness();
    // The stale primary answers at once; the real one only after 300 ms.
    const c = cluster(['stale', primary([1, 900n])], ['real', 'hang']);
    const check = async (e: { target: Fake }, signal: AbortSignal) => {
      if (e.target.name !== 'real') return c.check(e);
      await new Promise((r) => clock.setTimeout(r as () => void, 300));
      signal.throwIfAborted();
      return primary([2, 1n]);
    };
    const db = failover({ clock, bus, endpoints: c.endpoints, roles: { check, wait: 2_000 } });
    const write = db.execute(run('write'));
    await clock.advance(300);
    expect(await write).toBe('real');
    expect(c.node('stale').calls).toEqual([]);
    db.dispose();

    // Nothing answers: the wait is bounded, then the clear error.
    const d = cluster(['x', 'hang'], ['y', 'hang']);
    const db2 = failover({ clock, bus, endpoints: d.endpoints, roles: { check: d.check, wait: 500, timeout: 5_000 } });
    const refused = db2.execute(run('write')).catch((e: unknown) => e);
    await clock.advance(500);
    expect(await refused).toMatchObject({ code: 'E_NO_PRIMARY', roles: { x: 'unknown', y: 'unknown' } });
    db2.dispose();
  });

  it('reads only from replicas within maxLag, else from the primary; reads: primary prefers the primary', async () => {
    const { clock, bus } = harness();
    const c = cluster(['p', primary([1, 1n])], ['r', replica(8_000)]);
    const db = failover({ clock, bus, endpoints: c.endpoints, roles: { check: c.check, maxLag: 5_000 } });
    const read = db.execute(run('read'), { intent: 'read' });
    await clock.advance(0);
    expect(await read).toBe('p');
    c.node('r').report = replica(100);
    await clock.advance(2_000);
    expect(await db.execute(run('read'), { intent: 'read' })).toBe('r');
    db.dispose();
    const preferPrimary = failover({ clock, bus, endpoints: c.endpoints, roles: { check: c.check, reads: 'primary' } });
    const first = preferPrimary.execute(run('read'), { intent: 'read' });
    await clock.advance(0);
    expect(await first).toBe('p');
    c.node('p').report = 'down';
    await clock.advance(6_000); // the read it served counts as a sign of life for one check: three checks
    expect(await preferPrimary.execute(run('read'), { intent: 'read' })).toBe('r');
    preferPrimary.dispose();
  });

  it('keeps a primary whose role checks time out while its calls succeed (a busy server, not a dead one)', async () => {
    const { clock, bus, of } = harness();
    const c = cluster(['p', primary([1, 1n])], ['r', replica()]);
    const db = failover({
      clock,
      bus,
      endpoints: c.endpoints,
      roles: { check: c.check, interval: 1_000, timeout: 500 },
    });
    await clock.advance(0);
    c.node('p').report = 'hang';
    // Checks run from 1000 to 1500, 2500 to 3000...: a write succeeds while each one runs.
    await clock.advance(1_250);
    for (let i = 0; i < 5; i++) {
      expect(await db.execute(run('write'))).toBe('p');
      await clock.advance(1_500);
    }
    expect(of('failover.role').filter((e) => e.role === 'unreachable')).toEqual([]);
    // No call succeeds any more: a timed-out check makes it unreachable.
    await clock.advance(3_000);
    expect(db.snapshot().endpoints[0]).toMatchObject({ discovered: 'unreachable' });
    await expect(db.execute(run('write'))).rejects.toThrow(NoPrimaryError);
    db.dispose();
  });

  it("keeps writing to an ejected primary (there is nowhere else), unless panic is 'fail-fast'", async () => {
    for (const panic of ['all', 'fail-fast'] as const) {
      const { clock, bus, of } = harness();
      const c = cluster(['p', primary([1, 1n])], ['r', replica()]);
      const db = failover({
        clock,
        bus,
        panic,
        endpoints: c.endpoints,
        roles: { check: c.check },
        ejection: { consecutiveFailures: 2 },
      });
      await clock.advance(0);
      c.node('p').fail = () => Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' });
      for (let i = 0; i < 2; i++) await expect(db.execute(run('write'))).rejects.toThrow('timeout');
      expect(of('failover.eject')).toMatchObject([{ endpoint: 'p' }]);
      c.node('p').fail = undefined;
      if (panic === 'all') expect(await db.execute(run('write'))).toBe('p');
      else
        await expect(db.execute(run('write'))).rejects.toMatchObject({
          code: 'E_NO_PRIMARY',
          roles: { p: 'primary, ejected' },
        });
      db.dispose();
    }
  });

  it('retries a failed read on another endpoint, never a write', async () => {
    const { clock, bus } = harness();
    const c = cluster(['p', primary([1, 1n])], ['r', replica()]);
    const db = failover({ clock, bus, endpoints: c.endpoints, roles: { check: c.check }, retry: { idempotent: true } });
    await clock.advance(0);
    c.node('r').fail = () => Object.assign(new Error('Connection terminated unexpectedly'), { code: 'ECONNRESET' });
    expect(await db.execute(run('read'), { intent: 'read' })).toBe('p');
    c.node('p').fail = () => Object.assign(new Error('Connection terminated unexpectedly'), { code: 'ECONNRESET' });
    await expect(db.execute(run('write'))).rejects.toThrow('Connection terminated');
    expect(c.node('p').calls.filter((x) => x === 'write')).toHaveLength(1);
    expect(c.node('r').calls.filter((x) => x === 'write')).toHaveLength(0);
    db.dispose();
  });

  it('never ejects an endpoint for errors that prove it alive; a read-only refusal checks roles again at once', async () => {
    const { clock, bus, of } = harness();
    const c = cluster(['p', primary([1, 1n])], ['r', replica()]);
    const db = failover({
      clock,
      bus,
      endpoints: c.endpoints,
      roles: { check: c.check, classify: pgClassify, interval: 60_000 },
      ejection: { consecutiveFailures: 3 },
    });
    await clock.advance(0);
    const duplicate = () =>
      Object.assign(new Error('duplicate key value violates unique constraint "t_pkey"'), {
        code: '23505',
        severity: 'ERROR',
      });
    c.node('p').fail = duplicate;
    for (let i = 0; i < 20; i++) await expect(db.execute(run('write'))).rejects.toThrow('duplicate key');
    expect(of('failover.eject')).toEqual([]);
    c.node('p').fail = undefined;
    expect(await db.execute(run('write'))).toBe('p');

    // p was demoted behind the set's back: the refusal makes the set look again, without waiting 60 s.
    const checks = c.node('p').checks;
    c.node('p').report = replica();
    c.node('r').report = primary([2, 1n]);
    c.node('p').fail = () =>
      Object.assign(new Error('cannot execute INSERT in a read-only transaction'), {
        code: '25006',
        severity: 'ERROR',
      });
    await expect(db.execute(run('write'))).rejects.toThrow('read-only');
    await clock.advance(0);
    expect(c.node('p').checks).toBe(checks + 1);
    expect(of('failover.eject')).toEqual([]);
    await clock.advance(60_000);
    expect(await db.execute(run('write'))).toBe('r');
    db.dispose();
  });

  it("refuses roles with mode 'active-passive', and bad role settings, naming the option", () => {
    const check = () => ({ role: 'primary' as const });
    expect(() => failover({ endpoints: ['a'], mode: 'active-passive', roles: { check } })).toThrow(HoldfastConfigError);
    expect(() => failover({ endpoints: ['a'], mode: 'active-passive', roles: { check } })).toThrow(/mode must be/);
    expect(() => failover({ endpoints: ['a'], roles: { check, interval: -1 } })).toThrow(/roles\.interval/);
    expect(() => failover({ endpoints: ['a'], roles: { check, reads: 'any' as 'primary' } })).toThrow(/roles\.reads/);
  });

  it('a malformed role report makes the endpoint unreachable, never a primary', async () => {
    const { clock, bus } = harness();
    const db = failover({
      clock,
      bus,
      endpoints: ['a'],
      roles: { check: () => ({ role: 'leader' }) as unknown as RoleReport },
    });
    const write = db.execute(() => 'x').catch((e: unknown) => e);
    await clock.advance(2_000); // a second failed check, and the write is decided
    expect(await write).toMatchObject({ code: 'E_NO_PRIMARY', roles: { a: 'unreachable' } });
    db.dispose();
  });
  it("tells each check whether the set's first round is done, and asks a replica answered in it again once it is", async () => {
    const { clock, bus } = harness();
    const c = cluster(['a', replica(20)], ['b', primary([1, 100n])], ['h', 'hang']);
    const seen: [string, boolean | undefined][] = [];
    const check = (e: { target: Fake }, _signal: AbortSignal, settings: { firstRound?: boolean }) => {
      seen.push([e.target.name, settings.firstRound]);
      return c.check(e);
    };
    const db = failover({
      clock,
      bus,
      endpoints: c.endpoints,
      roles: { check, interval: 1_000, timeout: 500, unreachableAfter: 2 },
    });
    try {
      await clock.advance(0);
      expect(seen).toEqual([
        ['a', true],
        ['b', true],
        ['h', true],
      ]);
      seen.length = 0;
      // h hangs: its first check times out at 500 ms, its second (asked at once; the others have
      // answered) at 1 s. a's and b's checks at 1 s start before that: still in the first round.
      // h unreachable, the round is done: a (a replica) is asked again at once, b (a primary) is not.
      await clock.advance(1_000);
      expect(seen).toEqual([
        ['h', false],
        ['a', true],
        ['b', true],
        ['a', false],
      ]);
      seen.length = 0;
      await clock.advance(2_000);
      expect(seen.length).toBeGreaterThan(2);
      expect(seen.every(([, first]) => first === false)).toBe(true);
      // A check's own lag stands: only the check knows whether it was judged against the others.
      expect(db.snapshot().endpoints.map((e) => [e.name, e.discovered, e.lag])).toEqual([
        ['a', 'replica', 20],
        ['b', 'primary', null],
        ['h', 'unreachable', null],
      ]);
    } finally {
      db.dispose();
    }
  });
});

describe('roles: fencing, as a property', () => {
  it('every write goes to the claimant with the strictly highest token, or nowhere', async () => {
    const claim = fc.oneof(
      fc.constant<'down'>('down'),
      fc.constant(replica()),
      fc.tuple(fc.integer({ min: 1, max: 3 }), fc.bigInt({ min: 0n, max: 5n })).map((t) => primary(t)),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(claim, { minLength: 1, maxLength: 5 }), async (claims) => {
        const { clock, bus } = harness();
        const c = cluster(...claims.map((r, i): [string, Fake['report']] => [`n${i}`, r]));
        const db = failover({ clock, bus, endpoints: c.endpoints, roles: { check: c.check } });
        const write = db.execute(run('write')).catch((e: unknown) => e);
        await clock.advance(2_000); // a server that is down gets a second check before the first write
        const outcome = await write;
        db.dispose();
        const tokens = claims.map((r) => (typeof r === 'object' && r.role === 'primary' ? r.token : undefined));
        const best = tokens.reduce<number>(
          (b, t, i) => (t === undefined ? b : b < 0 || compareTokens(t, tokens[b]) > 0 ? i : b),
          -1,
        );
        const unique =
          best >= 0 && tokens.every((t, i) => i === best || t === undefined || compareTokens(t, tokens[best]) < 0);
        if (unique) expect(outcome).toBe(`n${best}`);
        else expect(outcome).toBeInstanceOf(NoPrimaryError);
      }),
      { numRuns: 150 },
    );
  });
});

describe('ready-made classifiers and tokens', () => {
  it('pgClassify: SQLSTATE classes of a live server are alive, 25006 is readOnly, the rest failures', () => {
    const pgError = (code: string) => Object.assign(new Error(code), { code, severity: 'ERROR' });
    for (const code of ['23505', '23503', '42601', '42501', '22P02', '28P01', '40001', '0A000', '3D000', 'P0001']) {
      expect(pgClassify(pgError(code)), code).toBe('alive');
    }
    expect(pgClassify(pgError('25006'))).toBe('readOnly');
    for (const code of ['08006', '53300', '57P01', '57014', '58030', 'XX000']) {
      expect(pgClassify(pgError(code)), code).toBe('failure');
    }
    expect(pgClassify(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))).toBe('failure');
    expect(pgClassify(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }))).toBe('failure');
    expect(pgClassify(new Error('Connection terminated unexpectedly'))).toBe('failure');
    fc.assert(fc.property(fc.anything(), (x) => ['alive', 'readOnly', 'failure'].includes(pgClassify(x))));
  });

  it('redisClassify: READONLY is readOnly, other replies alive, LOADING/BUSY/... and non-replies failures', () => {
    const reply = (message: string) => Object.assign(new Error(message), { name: 'ReplyError' });
    expect(redisClassify(reply("READONLY You can't write against a read only replica."))).toBe('readOnly');
    for (const m of [
      'ERR unknown command',
      'WRONGTYPE Operation',
      'NOSCRIPT No matching script',
      'MOVED 3999 127.0.0.1:6381',
    ]) {
      expect(redisClassify(reply(m)), m).toBe('alive');
    }
    for (const m of ['LOADING Redis is loading', 'BUSY Redis is busy', 'MASTERDOWN Link with MASTER is down']) {
      expect(redisClassify(reply(m)), m).toBe('failure');
    }
    expect(redisClassify(new Error('Connection is closed.'))).toBe('failure');
    fc.assert(fc.property(fc.anything(), (x) => ['alive', 'readOnly', 'failure'].includes(redisClassify(x))));
  });

  it('parseLsn reads X/Y hex as bytes, in order, and refuses anything else', () => {
    expect(parseLsn('0/3000148')).toBe(0x3000148n);
    expect(parseLsn('16/B374D848')).toBe((0x16n << 32n) | 0xb374d848n);
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), (n) => {
        const text = `${(n >> 32n).toString(16).toUpperCase()}/${(n & 0xffffffffn).toString(16).toUpperCase()}`;
        expect(parseLsn(text)).toBe(n);
      }),
    );
    fc.assert(
      fc.property(fc.string(), (s) => /^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/.test(s) || throws(() => parseLsn(s))),
    );
  });

  it('compareRedisTokens: a promoted master outranks the master it left; one history by offset; never offsets across histories', () => {
    const none = '0000000000000000000000000000000000000000';
    const old = ['aaaa', none, 500] as const;
    const promoted = ['bbbb', 'aaaa', 480] as const;
    expect(compareRedisTokens(promoted, old)).toBe(1);
    expect(compareRedisTokens(old, promoted)).toBe(-1);
    expect(compareRedisTokens(['aaaa', none, 10], ['aaaa', none, 0])).toBe(1);
    expect(compareRedisTokens(['aaaa', none, 0], ['aaaa', none, 10])).toBe(-1);
    // Offsets of unrelated histories say nothing about which master is current: never a win by offset.
    expect(compareRedisTokens(['cccc', 'dddd', 10], ['eeee', 'ffff', 0])).toBe(0);
    expect(compareRedisTokens(['cccc', none, 10], ['eeee', none, 0])).toBe(0);
    // A master promoted (twice, here) outranks one never promoted, however far ahead its offset.
    expect(compareRedisTokens(['aaaa', none, 9_000], ['cccc', 'bbbb', 7_000])).toBe(-1);
    expect(compareRedisTokens(['cccc', 'bbbb', 7_000], ['aaaa', none, 9_000])).toBe(1);
    // The old master restarted empty (a new id, no history) loses to the replica promoted from it.
    expect(compareRedisTokens(['ffff', none, 0], ['bbbb', 'aaaa', 480])).toBe(-1);
  });
});

function throws(fn: () => unknown): boolean {
  try {
    fn();
    return false;
  } catch {
    return true;
  }
}
