import { describe, expect, it } from 'vitest';
import { failover, type RoleReport, UnconfirmedWriteError } from '../src/index.js';
import { primary, replica, servers, write } from './fake-roles.js';
import { harness } from './support.js';

/**
 * A primary that went silent (frozen, partitioned) and comes back still claiming primary, while
 * another server may have been promoted in between (what Redis Sentinel or Patroni do): it must
 * not take writes on the strength of what the set knew of the others before.
 */

describe('a primary back from silence', () => {
  it('takes no write until the others were asked again: one promoted meanwhile fences it', async () => {
    const { clock, bus, of } = harness();
    const c = servers(['a', primary([1, 5])], ['b', replica]);
    // Checks of b run at 1000, 2000, 3000...; a's, once they hang for 300 ms, fall between them.
    const roles = { check: c.check, interval: 1_000, timeout: 300 };
    const db = failover({ clock, bus, endpoints: c.endpoints, roles, policies: false });
    await clock.advance(0);
    c.node('a').report = 'hang';
    await clock.advance(2_600); // a's check at 1000 timed out: unreachable; it was asked again at 1300 and 2600
    expect(db.snapshot()).toMatchObject({ primary: null, endpoints: [{ discovered: 'unreachable' }, {}] });
    // b is promoted after its check at 3000; a answers again at 3900, as a primary of the old history.
    await clock.advance(500);
    c.node('b').report = primary([2, 6]);
    c.node('a').report = primary([1, 5]);
    await clock.advance(1_000);
    expect(await db.execute(write)).toBe('b');
    expect(c.node('a').writes).toBe(0);
    expect(of('failover.fence').map((e) => [e.endpoint, e.primary])).toEqual([['a', 'b']]);
    db.dispose();
  });

  it('is written to again once the others were asked and none outranks it', async () => {
    const { clock, bus } = harness();
    const c = servers(['a', primary([1, 5])], ['b', replica]);
    const db = failover({
      clock,
      bus,
      endpoints: c.endpoints,
      roles: { check: c.check, interval: 1_000, timeout: 300 },
    });
    await clock.advance(0);
    c.node('a').report = 'hang';
    await clock.advance(3_100);
    c.node('a').report = primary([1, 9]); // asked at 3900 (its checks at 1000 and 1300, then 2600, timed out)
    await clock.advance(1_000);
    expect(await db.execute(write)).toBe('a');
    db.dispose();
  });
});

describe('a write answered by a primary that lost its place meanwhile', () => {
  async function inFlight(aBack: RoleReport, bAfter: RoleReport) {
    const { clock, bus } = harness();
    const c = servers(['a', primary([1, 5])], ['b', replica]);
    const db = failover({
      clock,
      bus,
      endpoints: c.endpoints,
      roles: { check: c.check, interval: 1_000, timeout: 300 },
    });
    await clock.advance(0);
    let answer = () => {};
    c.node('a').gate = new Promise((resolve) => {
      answer = resolve;
    });
    const outcome = db.execute(write).then(
      (name) => name,
      (error: unknown) => error,
    );
    c.node('a').report = 'hang'; // frozen: the write and the checks wait
    await clock.advance(2_600);
    c.node('b').report = bAfter;
    await clock.advance(500);
    c.node('a').report = aBack;
    answer(); // a resumes: it answers the write it held, then its checks
    await clock.advance(0);
    await clock.advance(700);
    db.dispose();
    return { result: await outcome, writes: c.node('a').writes };
  }

  it('fails it with UnconfirmedWriteError when another was promoted meanwhile: the write may be lost', async () => {
    const { result, writes } = await inFlight(primary([1, 5]), primary([2, 6]));
    expect(writes).toBe(1); // a applied it...
    expect(result).toBeInstanceOf(UnconfirmedWriteError); // ...but it is not reported as done
    expect(result).toMatchObject({ code: 'E_UNCONFIRMED_WRITE', endpoint: 'a', role: 'fenced' });
    expect((result as Error).message).toBe(
      'failover: a answered the write after it stopped being the primary (now fenced): it may be lost',
    );
  });

  it('succeeds when asking again shows it the primary still', async () => {
    expect((await inFlight(primary([1, 9]), replica)).result).toBe('a');
  });
});
