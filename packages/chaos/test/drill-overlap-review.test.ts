/**
 * Review of overlapping drills on one proxy. A toxic's handle removed it by name: a step taking
 * off its own `freeze()` (or any toxic of a name both drills use) took off the other drill's,
 * mid-outage; and its own, replaced meanwhile, came back on at the other's end.
 */
import { describe, expect, it } from 'vitest';
import type { ToxicHandle } from '../src/index.js';
import { overlapRig } from './support/overlap-rig.js';

const rig = overlapRig();
const { drillOf, toxics } = rig;

function deferred() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { open, opened };
}

describe('two drills freezing one proxy', () => {
  it("one's step unfreezing leaves the other's freeze on, and its own does not come back", async () => {
    const bFroze = deferred();
    let mine: ToxicHandle | undefined;
    const a = drillOf(
      () => {
        mine = rig.proxy.freeze();
      },
      () => bFroze.opened,
      () => mine?.remove(),
    );
    const b = drillOf(() => {
      rig.proxy.freeze();
      bFroze.open();
    });
    await b.ran;
    await a.ran;
    // Before the fix: [] (drill a's unfreeze took drill b's freeze off, mid-outage).
    expect(toxics()).toEqual(['freeze']);
    await b.end();
    // Before the fix: [ 'freeze' ] (drill a's freeze, taken off by its own step, back on).
    expect(toxics()).toEqual([]);
    await a.end();
    expect(toxics()).toEqual([]);
  });

  it("a step taking its toxic off puts back the user's of its name it replaced", async () => {
    rig.proxy.add({ type: 'latency', name: 'slow', latency: 10 });
    const a = drillOf(() => rig.proxy.add({ type: 'latency', name: 'slow', latency: 500 }).remove());
    await a.ran;
    // Before the fix: [] (the user's setup lost for good: the drill's end found its own toxic off).
    expect(rig.proxy.snapshot().toxics).toEqual([{ name: 'slow', type: 'latency', direction: 'downstream' }]);
    await a.end();
    expect(toxics()).toEqual(['slow']);
  });

  it("a step still running after its drill ended (aborted mid-step) undoes none of the user's faults put on since", async () => {
    const release = deferred();
    const a = drillOf(
      () => rig.proxy.kill(),
      () => release.opened,
      () => rig.proxy.restore(),
    );
    await waitFor(() => !rig.proxy.snapshot().listening);
    await a.end();
    expect(rig.proxy.snapshot().listening).toBe(true);
    // The user's own faults, after the drill.
    await rig.proxy.refuse();
    rig.proxy.add({ type: 'latency', name: 'mine', latency: 10 });
    release.open();
    await a.ran;
    // Before the fix: true and [] (the ended drill's late restore() listened again and cleared).
    expect(rig.proxy.snapshot().listening).toBe(false);
    expect(toxics()).toEqual(['mine']);
  });
});

async function waitFor(ok: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !ok(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(ok()).toBe(true);
}
