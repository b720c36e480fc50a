/**
 * Two drills at once on one fault proxy: each owns exactly the faults its steps put on. The one
 * that ends first takes off its own and leaves the other's on; the other, ending later, puts back
 * none of the first's.
 */
import { describe, expect, it } from 'vitest';
import { overlapRig } from './support/overlap-rig.js';

const rig = overlapRig();
const { drillOf, toxics } = rig;

describe('two drills at once on one proxy', () => {
  it('both kill it: the first to end leaves it refusing for the other; it listens once both ended', async () => {
    const a = drillOf(() => rig.proxy.kill());
    await a.ran;
    const b = drillOf(() => rig.proxy.kill());
    await b.ran;
    await a.end();
    // Before the fix: true (drill a's end listened again, in the middle of drill b's outage).
    expect(rig.proxy.snapshot().listening).toBe(false);
    await b.end();
    expect(rig.proxy.snapshot().listening).toBe(true);
  });

  it('both kill it, the second ends first: still refusing for the first until it ends', async () => {
    const a = drillOf(() => rig.proxy.kill());
    await a.ran;
    const b = drillOf(() => rig.proxy.kill());
    await b.ran;
    await b.end();
    expect(rig.proxy.snapshot().listening).toBe(false);
    await a.end();
    expect(rig.proxy.snapshot().listening).toBe(true);
  });

  it('both freeze it: the second to end puts back no freeze of the first, already ended', async () => {
    const a = drillOf(() => rig.proxy.freeze());
    await a.ran;
    const b = drillOf(() => rig.proxy.freeze());
    await b.ran;
    await a.end();
    expect(toxics()).toEqual(['freeze']);
    await b.end();
    // Before the fix: ['freeze'] (drill b's end put drill a's freeze back, for good).
    expect(toxics()).toEqual([]);
  });

  it('both freeze it, the second ends first: the first is still frozen until it ends', async () => {
    const a = drillOf(() => rig.proxy.freeze());
    await a.ran;
    const b = drillOf(() => rig.proxy.freeze());
    await b.ran;
    await b.end();
    expect(toxics()).toEqual(['freeze']);
    await a.end();
    expect(toxics()).toEqual([]);
  });

  it("a restore step of one drill takes off its own faults, not the other drill's", async () => {
    const b = drillOf(
      () => rig.proxy.add({ type: 'latency', name: 'b-slow', latency: 100 }),
      () => rig.proxy.kill(),
    );
    await b.ran;
    const a = drillOf(
      () => rig.proxy.add({ type: 'latency', name: 'a-slow', latency: 100 }),
      () => rig.proxy.kill(),
      () => rig.proxy.restore(),
    );
    await a.ran;
    // Before the fix: [] and listening (drill a's restore step took drill b's faults off too).
    expect({ toxics: toxics(), listening: rig.proxy.snapshot().listening }).toEqual({
      toxics: ['b-slow'],
      listening: false,
    });
    await a.end();
    await b.end();
    expect({ toxics: toxics(), listening: rig.proxy.snapshot().listening }).toEqual({ toxics: [], listening: true });
  });

  it('a toxic of the same name in the user’s setup and both drills: after both, the user’s is back', async () => {
    rig.proxy.add({ type: 'latency', name: 'slow', latency: 1 });
    const a = drillOf(() => rig.proxy.add({ type: 'latency', name: 'slow', latency: 2 }));
    await a.ran;
    const b = drillOf(() => rig.proxy.add({ type: 'latency', name: 'slow', latency: 3 }));
    await b.ran;
    await a.end();
    expect(toxics()).toEqual(['slow']);
    await b.end();
    // The user's own, put on before either drill.
    expect(rig.proxy.snapshot().toxics).toEqual([{ name: 'slow', type: 'latency', direction: 'downstream' }]);
  });

  it('a refusal of the user before both drills stays after them', async () => {
    await rig.proxy.refuse();
    const a = drillOf(() => rig.proxy.kill());
    await a.ran;
    const b = drillOf(() => rig.proxy.kill());
    await b.ran;
    await a.end();
    await b.end();
    expect(rig.proxy.snapshot().listening).toBe(false);
  });
});
