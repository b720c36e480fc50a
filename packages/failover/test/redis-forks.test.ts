/**
 * `compareRedisTokens` on forks (a promotion, or a load of an RDB at start, which Redis 7 records
 * the same way) and `redisRoles()`' lag of a replica from what its set saw of the masters, on
 * scripted `INFO replication` texts. The real servers: review-redis-roles-s37.test.ts.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Endpoint } from '../src/endpoint.js';
import { compareRedisTokens, type RedisInfoSource, redisRole, redisRoles } from '../src/ioredis.js';

const none = '0000000000000000000000000000000000000000';
const R = 'a'.repeat(40);
const X = 'b'.repeat(40);
const Y = 'c'.repeat(40);
const Z = 'd'.repeat(40);

/** `INFO replication` of a master, as Redis 7.0 writes it. */
function master(replid: string, offset: number, fork?: { replid2: string; second: number; first: number }): string {
  const first = fork?.first ?? 1;
  return [
    '# Replication',
    'role:master',
    'connected_slaves:0',
    `master_replid:${replid}`,
    `master_replid2:${fork?.replid2 ?? none}`,
    `master_repl_offset:${offset}`,
    `second_repl_offset:${fork?.second ?? -1}`,
    'repl_backlog_active:1',
    'repl_backlog_size:1048576',
    `repl_backlog_first_byte_offset:${first}`,
    `repl_backlog_histlen:${Math.max(0, offset - first + 1)}`,
    '',
  ].join('\r\n');
}

function replica(replid: string, offset: number, link = 'up'): string {
  return [
    '# Replication',
    'role:slave',
    'master_host:127.0.0.1',
    'master_port:6379',
    `master_link_status:${link}`,
    'master_last_io_seconds_ago:1',
    `master_link_down_since_seconds:${link === 'up' ? 0 : 3}`,
    `master_replid:${replid}`,
    `master_replid2:${none}`,
    `master_repl_offset:${offset}`,
    'second_repl_offset:-1',
    '',
  ].join('\r\n');
}

const source = (text: () => string): RedisInfoSource => ({ info: async () => text() });

describe('compareRedisTokens: forks', () => {
  it('tells a promotion from a snapshot loaded at start by the backlog the token carries', async () => {
    // Promoted at 52 with 51 bytes of the old history in its backlog; restarted off an RDB at 52: none.
    const promoted = (await redisRole(source(() => master(X, 51, { replid2: R, second: 52, first: 1 })))).token;
    const copy = (await redisRole(source(() => master(Y, 51, { replid2: R, second: 52, first: 52 })))).token;
    const written = (await redisRole(source(() => master(Y, 90, { replid2: R, second: 52, first: 52 })))).token;
    expect([promoted, copy, written]).toEqual([
      [X, R, 51, 'promoted', 51],
      [Y, R, 51, 'copy', 51],
      [Y, R, 90, 'unknown', 51],
    ]);
    const live = [R, none, 120];
    expect(compareRedisTokens(promoted, live)).toBe(1); // a failover: the promoted replica
    expect(compareRedisTokens(copy, live)).toBe(-1); // a replica restarted without replicaof, a restored backup
    expect(compareRedisTokens(written, live)).toBe(0); // cannot tell: a split brain
    // The "live" one at or before where the other forked, whatever the fork kind: it took nothing
    // since, the forked one holds all it holds (s37b: a promotion whose backlog wrapped, the old
    // master idle since).
    expect(compareRedisTokens(copy, [R, none, 40])).toBe(1);
    expect(compareRedisTokens(written, [R, none, 51])).toBe(1);
    expect(compareRedisTokens([R, none, 51], written)).toBe(-1);
    expect(compareRedisTokens(written, [R, none, 52])).toBe(0);
    expect(compareRedisTokens([Y, R, 90, 'unknown'], [R, none, 0])).toBe(0); // no forkedAt: cannot tell
    // The old master restarted off its RDB beside the replica promoted from it: the promoted one.
    expect(compareRedisTokens(promoted, [Y, R, 51, 'copy'])).toBe(1);
    expect(compareRedisTokens([Y, R, 51, 'copy'], promoted)).toBe(-1);
    expect(compareRedisTokens(promoted, [Y, R, 51, 'promoted'])).toBe(0);
    expect(compareRedisTokens([X, R, 51, 'copy'], [Y, R, 51, 'copy'])).toBe(0);
    // Written since its fork (its backlog trimmed past it): over a snapshot only if it forked at or
    // past all the snapshot holds.
    expect(compareRedisTokens([X, R, 9_000_000, 'unknown', 60], [Y, R, 51, 'copy', 51])).toBe(1);
    expect(compareRedisTokens([Y, R, 51, 'copy', 51], [X, R, 9_000_000, 'unknown', 60])).toBe(-1);
    expect(compareRedisTokens([X, R, 9_000_000, 'unknown', 40], [Y, R, 51, 'copy', 51])).toBe(0);
    expect(compareRedisTokens([X, R, 9_000_000, 'unknown', 60], [Y, R, 70, 'unknown', 51])).toBe(0);
    // Unrelated histories: only a promotion outranks a master never forked (restarted empty).
    expect(compareRedisTokens(promoted, [Y, none, 0])).toBe(1);
    expect(compareRedisTokens(copy, [X, none, 0])).toBe(0);
    expect(compareRedisTokens(written, [X, none, 0])).toBe(0);
    // A snapshot with nothing written since its load loses to a promotion of another history (s37b:
    // the first old master back from its RDB after two failovers); written since, a tie.
    const other = [Z, X, 500, 'promoted', 400];
    expect(compareRedisTokens(other, copy)).toBe(1);
    expect(compareRedisTokens(copy, other)).toBe(-1);
    expect(compareRedisTokens(other, written)).toBe(0);
    expect(compareRedisTokens(other, [Y, R, 51, 'copy', 50])).toBe(0); // not where it forked: not a pure copy
  });

  it('is antisymmetric whatever it is given (an offset that is no number counts lowest)', () => {
    const id = fc.constantFrom(none, R, X, Y);
    const token = fc.oneof(
      fc.tuple(
        id,
        id,
        fc.oneof(fc.integer(), fc.constant(Number.NaN), fc.constant(Number.POSITIVE_INFINITY)),
        fc.constantFrom('promoted', 'copy', 'unknown'),
        fc.oneof(fc.integer(), fc.constant(Number.NaN)),
      ),
      fc.tuple(id, id, fc.oneof(fc.integer(), fc.constant(Number.NaN))),
      fc.anything(),
    );
    fc.assert(
      fc.property(token, token, (a, b) => {
        const ab = compareRedisTokens(a, b);
        const ba = compareRedisTokens(b, a);
        expect([-1, 0, 1]).toContain(ab);
        expect(ab + ba).toBe(0);
        expect(compareRedisTokens(a, a)).toBe(0);
      }),
    );
    expect(compareRedisTokens([R, none, Number.NaN], [R, none, 5])).toBe(-1);
    expect(compareRedisTokens([R, none, 5], [R, none, Number.NaN])).toBe(1);
  });
});

describe('redisRoles(): a replica lag from the masters seen', () => {
  let now = 1_000;
  afterEach(() => vi.restoreAllMocks());
  const settings = { interval: 100, timeout: 100 };

  function set(texts: Record<string, () => string>) {
    vi.spyOn(performance, 'now').mockImplementation(() => now);
    const roles = redisRoles<RedisInfoSource>();
    const targets = Object.fromEntries(Object.entries(texts).map(([name, text]) => [name, source(text)]));
    const check = (name: string, firstRound = false) =>
      roles.check(
        { name, target: targets[name] } as unknown as Endpoint<RedisInfoSource>,
        new AbortController().signal,
        { ...settings, firstRound },
      );
    return check;
  }

  it('a replica behind a master seen past it lags since then, however its link looks', async () => {
    let masterOffset = 100;
    let replicaOffset = 100;
    let masterDown = false;
    const a = () => {
      if (masterDown) throw new Error('frozen');
      return master(R, masterOffset);
    };
    const check = set({ a, b: () => replica(R, replicaOffset) });
    await check('a');
    expect(await check('b')).toMatchObject({ lag: 0 });
    masterOffset = 150; // written to, its replica cut off without a reset
    now = 1_100;
    await check('a');
    now = 1_350;
    expect((await check('b')).lag).toBe(250);
    replicaOffset = 150;
    now = 1_400;
    expect((await check('b')).lag).toBe(0);
    // Its master's checks fail (frozen, cut off): at least since it was last seen at an offset the replica has.
    now = 1_500;
    await check('a');
    masterDown = true;
    now = 1_600;
    await expect(check('a')).rejects.toThrow('frozen');
    now = 1_900;
    expect((await check('b')).lag).toBe(400);
  });

  it('a replica of a master outranked, or of a history no master seen is on, has an unknown lag', async () => {
    const check = set({
      old: () => master(R, 500),
      promoted: () => master(X, 480, { replid2: R, second: 481, first: 1 }),
      follower: () => replica(R, 500),
      other: () => replica(Y, 10),
      fresh: () => replica(X, 480),
    });
    await check('old');
    await check('promoted');
    expect((await check('follower')).lag).toBeUndefined();
    expect((await check('other')).lag).toBeUndefined();
    expect((await check('fresh')).lag).toBe(0);
    // Checked in the set's first round: unknown, the set asks it again once every endpoint answered.
    expect((await check('fresh', true)).lag).toBeUndefined();
  });

  it('a split brain (two masters neither outranks): every replica has an unknown lag', async () => {
    const check = set({
      a: () => master(X, 480, { replid2: R, second: 481, first: 1 }),
      b: () => master(Y, 480, { replid2: R, second: 481, first: 1 }),
      c: () => replica(X, 480),
    });
    await check('a');
    await check('b');
    expect((await check('c')).lag).toBeUndefined();
  });

  it('a replica is measured against the master elected, not outranked since, when tokens tie later (s37b)', async () => {
    let a = master(R, 100);
    let b = master(X, 200, { replid2: R, second: 101, first: 1 }); // promoted at 100
    let c = replica(X, 200);
    const check = set({ a: () => a, b: () => b, c: () => c });
    await check('a');
    await check('b');
    expect((await check('c')).lag).toBe(0);
    // b's backlog wraps (unknown) and a, fenced, took a write from elsewhere: their tokens tie now.
    a = master(R, 150);
    b = master(X, 9_000_000, { replid2: R, second: 101, first: 5_000_000 });
    c = replica(X, 9_000_000);
    expect(compareRedisTokens((await check('a')).token, (await check('b')).token)).toBe(0);
    expect((await check('c')).lag).toBe(0); // still b's replica: b stays the master elected
  });

  it('a replica never synced stays at Infinity', async () => {
    const text = replica(R, 0, 'down').replace('master_link_down_since_seconds:3', 'master_link_down_since_seconds:-1');
    const check = set({ a: () => master(R, 100), b: () => text });
    await check('a');
    expect((await check('b')).lag).toBe(Number.POSITIVE_INFINITY);
  });
});
