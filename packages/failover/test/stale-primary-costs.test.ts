import { describe, expect, it } from 'vitest';
import { failover, UnconfirmedWriteError } from '../src/index.js';
import { type Fake, primary, replica, servers, write } from './fake-roles.js';
import { harness } from './support.js';

/**
 * What the rule for a primary back from silence costs in normal operation: a write the real
 * primary acknowledged must not be reported as possibly lost, a caller must not wait past its own
 * signal, and a claim older than a primary elected while it was silent must not take writes.
 */

const settle = <R>(p: Promise<R>) =>
  p.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );

function gated(node: Fake): () => void {
  let open = () => {};
  node.gate = new Promise((resolve) => {
    open = resolve;
  });
  return open;
}

describe('a write the primary answers while its checks are slow, a replica hanging', () => {
  it('is confirmed when the primary answers its checks again, not failed as possibly lost', async () => {
    const { clock, bus } = harness();
    const c = servers(['a', primary([1, 5])], ['b', replica], ['c', replica]);
    // c's first check answers late: its checks then run out of step with a's, as they do in life.
    let first = true;
    const check = async (e: { target: Fake }) => {
      if (e.target.name === 'c' && first) {
        first = false;
        await new Promise<void>((resolve) => clock.setTimeout(() => resolve(), 450));
      }
      return c.check(e);
    };
    const roles = { check, interval: 1_000, timeout: 300 };
    const db = failover({ clock, bus, endpoints: c.endpoints, roles, policies: false });
    await clock.advance(1_700); // every server has answered (or failed) its first checks: writes are sent at once
    c.node('c').report = 'hang'; // a replica gone behind a black hole: every check of it times out
    const open = gated(c.node('a')); // a long write on a loaded primary...
    const outcome = settle(db.execute(write));
    c.node('a').report = 'hang'; // ...whose role checks time out meanwhile
    await clock.advance(3_110);
    expect(db.snapshot()).toMatchObject({ primary: null, endpoints: [{ discovered: 'unreachable' }, {}, {}] });
    c.node('a').report = primary([1, 6]); // the load passes: a answers the write, then its checks
    open();
    await clock.advance(0);
    await clock.advance(2_000);
    expect(c.node('a').writes).toBe(1);
    expect(db.snapshot()).toMatchObject({ primary: 'a' }); // a was the primary all along...
    expect(await outcome).toEqual({ value: 'a' }); // ...so its write is done, not possibly lost
    db.dispose();
  });
});

describe('the confirmation of a late write', () => {
  async function waiting() {
    const { clock, bus } = harness();
    const c = servers(['a', primary([1, 5])], ['b', replica]);
    const roles = { check: c.check, interval: 1_000, timeout: 300 };
    const db = failover({ clock, bus, endpoints: c.endpoints, roles, policies: false });
    await clock.advance(0);
    const open = gated(c.node('a'));
    const controller = new AbortController();
    const outcome = settle(db.execute(write, { signal: controller.signal }));
    c.node('a').report = 'hang';
    await clock.advance(2_600);
    open(); // a answers the write; its role checks still hang: the set waits for one
    await clock.advance(0);
    return { clock, db, controller, outcome, node: c.node };
  }

  it("ends when the caller's signal aborts, with its reason", async () => {
    const { clock, db, controller, outcome, node } = await waiting();
    expect(node('a').writes).toBe(1);
    const reason = new Error('caller gave up');
    controller.abort(reason);
    await clock.advance(1);
    const settled = await Promise.race([outcome, Promise.resolve('still waiting')]);
    expect(settled).toEqual({ error: reason });
    db.dispose();
  });

  it('ends at dispose() with UnconfirmedWriteError', async () => {
    const { clock, db, outcome } = await waiting();
    db.dispose();
    await clock.advance(1);
    const settled = await Promise.race([outcome, Promise.resolve('still waiting')]);
    expect((settled as { error: unknown }).error).toBeInstanceOf(UnconfirmedWriteError);
  });
});

describe('two primaries claiming, the newer one silent', () => {
  it('takes no write on the older claim of one back from silence', async () => {
    const { clock, bus, of } = harness();
    const c = servers(['a', primary([1, 5])], ['b', replica]);
    const roles = { check: c.check, interval: 1_000, timeout: 300 };
    const db = failover({ clock, bus, endpoints: c.endpoints, roles, policies: false });
    await clock.advance(0);
    c.node('a').report = 'hang'; // the primary freezes
    await clock.advance(2_600);
    c.node('b').report = primary([2, 6]); // b is promoted: the set sees it and writes there
    await clock.advance(1_000);
    expect(db.snapshot()).toMatchObject({ primary: 'b' });
    expect(await db.execute(write)).toBe('b');
    // b is cut off from the clients (or dies): no primary. Then a resumes, claiming the old history.
    c.node('b').report = 'hang';
    await clock.advance(4_000);
    expect(db.snapshot()).toMatchObject({ primary: null, endpoints: [{}, { discovered: 'unreachable' }] });
    c.node('a').report = primary([1, 5]);
    await clock.advance(3_000);
    expect(db.snapshot()).toMatchObject({ primary: null, endpoints: [{ discovered: 'fenced' }, {}] });
    expect(await settle(db.execute(write))).toMatchObject({ error: { code: 'E_NO_PRIMARY' } });
    expect(c.node('a').writes).toBe(0);
    // Once a reports a replica, or a history newer than b's, it is written to again.
    c.node('a').report = primary([2, 9]);
    await clock.advance(1_000);
    expect(await db.execute(write)).toBe('a');
    expect(of('failover.fence').map((e) => e.endpoint)).toContain('a');
    db.dispose();
  });

  it('does not fence a replica that was silent while the primary was elected: promoted meanwhile, it is written to', async () => {
    const { clock, bus } = harness();
    // Role checks without tokens (a check of your own): only claims to go by.
    const c = servers(['a', { role: 'primary' }], ['b', { role: 'replica' }]);
    const roles = { check: c.check, interval: 1_000, timeout: 300 };
    const db = failover({ clock, bus, endpoints: c.endpoints, roles, policies: false });
    await clock.advance(0);
    c.node('b').report = 'hang'; // the replica goes silent; the set keeps writing to a
    await clock.advance(2_600);
    expect(await db.execute(write)).toBe('a');
    // Switched over while b was out of sight: b promoted, a demoted.
    c.node('b').report = { role: 'primary' };
    c.node('a').report = { role: 'replica' };
    await clock.advance(2_000);
    expect(db.snapshot()).toMatchObject({ primary: 'b' });
    expect(await db.execute(write)).toBe('b');
    db.dispose();
  });
});
