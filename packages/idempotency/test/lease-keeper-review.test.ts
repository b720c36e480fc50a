import { ManualClock } from '@holdfast/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type IdempotencyStore, memoryStore } from '../src/index.js';
import { type HeldLease, LeaseKeeper } from '../src/lease.js';

// Review of the keeper's leases linked through themselves (engine19), against a Set's order (what
// the keeper kept them in before): leases held, dropped, lost and held again during a tick, in
// any order, on a store that answers in this process (renewed in the tick) and on one that
// answers later (a promise).

const N = 6;
const INTERVAL = 1_000;

class Lease implements HeldLease {
  older: HeldLease | undefined = undefined;
  newer: HeldLease | undefined = undefined;
  held = false;
  token = '';
  // Set by the test: what a visit of this lease (its key read for the renewal) does.
  onVisit: () => void = () => {};
  onLost: () => void = () => {};
  constructor(
    readonly key: string,
    readonly stale: boolean,
  ) {}
  get stored(): string {
    this.onVisit();
    return this.key;
  }
  readonly since = 0;
  lost(): void {
    this.onLost();
  }
  async cap(): Promise<boolean> {
    return true;
  }
  failed(): void {}
}

type Op = { kind: 'hold' | 'drop'; at: number } | { kind: 'tick'; reactions: [number, 'hold' | 'drop', number][] };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constantFrom<'hold' | 'drop'>('hold', 'drop'), at: fc.nat(N - 1) }),
  fc.record({
    kind: fc.constant<'tick'>('tick'),
    // At the visit of lease [0], hold or drop lease [2] (itself, one visited, one not yet).
    reactions: fc.array(fc.tuple(fc.nat(N - 1), fc.constantFrom<'hold' | 'drop'>('hold', 'drop'), fc.nat(N - 1)), {
      maxLength: 6,
    }),
  }),
);

async function run(ops: Op[], stale: boolean[], sync: boolean): Promise<void> {
  const clock = new ManualClock();
  const memory = memoryStore({ clock });
  // Answers later: renewed when the promise resolves, lost ones dropped then.
  const later: IdempotencyStore = {
    claim: async () => ({ status: 'claimed', token: 't', takeover: false }),
    complete: async () => true,
    release: async () => true,
    extend: async (key: string, token: string) => token === 't' && !key.startsWith('stale'),
  };
  const store = sync ? memory : later;
  const keeper = new LeaseKeeper(store, clock, () => clock.now(), 3 * INTERVAL, 1e12, 'review');
  const leases = stale.map((s, i) => new Lease(`${s ? 'stale' : 'k'}${i}`, s));
  // The model: held leases in the order a Set keeps them.
  let model: Lease[] = [];
  const hold = (lease: Lease) => {
    keeper.hold(lease);
    if (!model.includes(lease)) model.push(lease);
  };
  const drop = (lease: Lease) => {
    keeper.drop(lease);
    model = model.filter((l) => l !== lease);
  };
  const check = () => {
    expect(keeper.size).toBe(model.length);
    model.forEach((lease, i) => {
      expect(lease.held).toBe(true);
      expect(lease.older).toBe(model[i - 1]);
      expect(lease.newer).toBe(model[i + 1]);
    });
    for (const lease of leases) {
      if (model.includes(lease)) continue;
      expect([lease.held, lease.older, lease.newer]).toEqual([false, undefined, undefined]);
    }
  };
  for (const o of ops) {
    if (o.kind === 'hold') hold(leases[o.at] as Lease);
    else if (o.kind === 'drop') drop(leases[o.at] as Lease);
    else {
      // Each live key owned by its lease's token in the memory store (a key unrenewed for a
      // while expired there: claimed again, outside the test).
      if (sync) {
        for (const lease of leases) {
          if (lease.stale) {
            lease.token = 'stale';
            continue;
          }
          if (!(await memory.extend(lease.key, lease.token, 3 * INTERVAL))) {
            const claim = await memory.claim(lease.key, 'f', 3 * INTERVAL);
            if (claim.status !== 'claimed') throw new Error(claim.status);
            lease.token = claim.token;
          }
        }
      } else for (const lease of leases) lease.token = 't';
      const atStart = [...model];
      const { reactions } = o as Extract<Op, { kind: 'tick' }>;
      // Dropped (by a reaction, or found lost) or held again during this tick.
      const dropped = new Set<Lease>();
      const reHeld = new Set<Lease>();
      const visits = new Map<Lease, number>();
      for (const lease of leases) {
        lease.onVisit = () => {
          // A visit (the keeper reads the key to renew it) of a lease not held renews a run
          // that settled.
          expect(model.includes(lease)).toBe(true);
          visits.set(lease, (visits.get(lease) ?? 0) + 1);
          if ((visits.get(lease) as number) > 1) return;
          for (const [at, kind, target] of reactions) {
            if (leases[at] !== lease) continue;
            const other = leases[target] as Lease;
            if (kind === 'drop') {
              if (model.includes(other)) dropped.add(other);
              drop(other);
            } else {
              if (!model.includes(other)) reHeld.add(other);
              hold(other);
            }
          }
        };
        // Found lost (a stale token): the keeper dropped it.
        lease.onLost = () => {
          expect(lease.stale).toBe(true);
          expect(lease.held).toBe(false);
          dropped.add(lease);
          model = model.filter((l) => l !== lease);
        };
      }
      await clock.advance(INTERVAL);
      await new Promise((resolve) => setImmediate(resolve));
      for (const lease of leases) lease.onVisit = () => {};
      // Every lease held from the tick's start was renewed unless dropped before its turn; none
      // twice unless dropped and held again meanwhile. Every stale one visited was found lost.
      for (const lease of atStart) if (!dropped.has(lease)) expect(visits.get(lease)).toBe(1);
      for (const [lease, count] of visits) {
        if (!reHeld.has(lease)) expect(count).toBe(1);
        if (lease.stale) expect(dropped.has(lease) || reHeld.has(lease)).toBe(true);
      }
    }
    check();
  }
  memory.dispose();
}

describe('LeaseKeeper: its linked leases against a Set', () => {
  for (const sync of [true, false]) {
    it(`held, dropped, lost and held again during ticks, in any order (${sync ? 'in-process store' : 'store answering later'})`, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.boolean(), { minLength: N, maxLength: N }),
          fc.array(op, { maxLength: 30 }),
          (stale, ops) => run(ops, stale, sync),
        ),
        { numRuns: 300 },
      );
    });
  }

  it('renews 10,000 live leases in one tick, half of them dropped during it', async () => {
    const clock = new ManualClock();
    const store = memoryStore({ clock });
    const keeper = new LeaseKeeper(store, clock, () => clock.now(), 3 * INTERVAL, 1e12, 'review');
    const leases: Lease[] = [];
    for (let i = 0; i < 10_000; i++) {
      const claim = await store.claim(`k${i}`, 'f', 3 * INTERVAL);
      if (claim.status !== 'claimed') throw new Error(claim.status);
      const lease = new Lease(`k${i}`, false);
      lease.token = claim.token;
      leases.push(lease);
      keeper.hold(lease);
    }
    let visits = 0;
    // Each visited lease drops the one 5,000 after it: those are never renewed.
    leases.forEach((lease, i) => {
      lease.onVisit = () => {
        visits++;
        if (i < 5_000) keeper.drop(leases[i + 5_000] as Lease);
      };
    });
    await clock.advance(INTERVAL);
    expect(visits).toBe(5_000);
    expect(keeper.size).toBe(5_000);
    for (const lease of leases) lease.onVisit = () => {};
    // 2.5 s later (past the dropped ones' 3 s lease from their claim, within the renewed ones'):
    await clock.advance(2_100);
    expect((await store.claim('k0', 'f', 1)).status).toBe('inProgress');
    expect((await store.claim('k4999', 'f', 1)).status).toBe('inProgress');
    expect((await store.claim('k5000', 'f', 1)).status).toBe('claimed');
    expect((await store.claim('k9999', 'f', 1)).status).toBe('claimed');
    for (const lease of leases) keeper.drop(lease);
    expect(keeper.size).toBe(0);
    store.dispose();
  });
});
