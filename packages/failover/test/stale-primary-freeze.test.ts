import { describe, expect, it } from 'vitest';
import { failover, type RoleReport } from '../src/index.js';
import { type Fake, primary, replica, servers, write } from './fake-roles.js';
import { harness } from './support.js';

/**
 * A master frozen (SIGSTOP) a little longer than Redis Sentinel's down-after, and resumed the
 * moment a replica is promoted: what `test/failover-redis-sentinel-freeze.test.ts` saw with
 * replicas that sync at once. Frozen, a server answers nothing; resumed, it answers every check and
 * write it held, in order. No write may be acknowledged by it once the replica outranks it.
 */

/** Checks and writes wait while `node` is frozen, and are answered when it resumes. */
function freezable(node: Fake) {
  let resume: () => void = () => {};
  return {
    freeze() {
      node.gate = new Promise((resolve) => {
        resume = resolve;
      });
    },
    resume: () => resume(),
  };
}

describe('a primary frozen and resumed as a replica is promoted', () => {
  it('acknowledges no write once the promoted replica outranks it, resumed before a second check of it failed', async () => {
    const { clock, bus, of } = harness();
    const c = servers(['a', primary([1, 5])], ['b', replica], ['c', replica]);
    const check = async (e: { target: Fake }): Promise<RoleReport> => {
      await e.target.gate; // frozen: the check waits, and is answered on resume with what it is then
      return c.check(e);
    };
    const roles = { check, interval: 1_000, timeout: 500 };
    const db = failover({ clock, bus, endpoints: c.endpoints, roles, timeout: 500, policies: false });
    const a = freezable(c.node('a'));
    // 20 writes/s, as the Sentinel test's load: each one's outcome, and when it was answered.
    const acked: { by: string; at: number }[] = [];
    const writes: Promise<unknown>[] = [];
    const writeEvery50 = async (until: number) => {
      while (clock.now() < until) {
        writes.push(
          db.execute(write).then(
            (by) => acked.push({ by, at: clock.now() }),
            () => {},
          ),
        );
        await clock.advance(50);
      }
    };
    const start = clock.now();
    // Writes succeed on a after its check at 0 ended: they prove nothing of its check at 1000, which
    // ends after a froze. Its first check to time out must stop writes: a resumes before a second.
    await writeEvery50(start + 600);
    a.freeze();
    await writeEvery50(start + 1_900); // frozen 1.3 s, past a down-after of 1 s: its checks and writes time out
    c.node('b').report = primary([2, 6]); // Sentinel promotes b (its replid2 is a's replid)...
    const promotedAt = clock.now();
    a.resume(); // ...and a resumes, still claiming the old history
    await writeEvery50(start + 4_000);
    await clock.advance(3_000);
    await Promise.all(writes);
    expect(db.snapshot()).toMatchObject({ primary: 'b' });
    expect(of('failover.fence').map((e) => e.endpoint)).toContain('a');
    const lost = acked.filter((w) => w.by === 'a' && w.at >= promotedAt).length;
    expect(lost).toBe(0);
    expect(acked.filter((w) => w.by === 'b').length).toBeGreaterThan(0);
    db.dispose();
  });
});
