/**
 * Review: a toxic's handle undoes its own `add()`, outside drills as in them. Before, outside a
 * drill, `remove()` took off whatever toxic was on under its name: a stale handle (called twice,
 * in a `finally`) took off a later toxic of that name, and a handle whose toxic had replaced the
 * user's left neither on. A `drop` that spent itself did not put back what it replaced either, in
 * a drill or out. And a step's `accept()` (or `restore()`) ended a refusal the user put on before
 * the drill for good: the drill did not leave the proxy as it found it.
 */
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { drill } from '../src/index.js';
import { client, listen, proxyTo } from './support/review.js';

/** An upstream that answers each chunk it reads with `ok`. */
const echo = () => listen((s) => s.on('data', () => s.write('ok')));

/** The toxics on now, as `name:type:latency`. */
const on = (p: Awaited<ReturnType<typeof proxyTo>>) =>
  (p as unknown as { toxicsFor(id: number, way: 'downstream'): { name: string; type: string; latency?: number }[] })
    .toxicsFor(0, 'downstream')
    .map((t) => `${t.name}:${t.type}${t.latency === undefined ? '' : `:${t.latency}`}`);

/** Resolves once `what()` holds (checked every 5 ms); the test's own timeout bounds it. */
async function until(what: () => boolean): Promise<void> {
  while (!what()) await new Promise((r) => setTimeout(r, 5));
}

/** A client that sends one chunk, whose reply the drop swallows, then another, whose reply it reads. */
async function lostReplyThenOne(p: Awaited<ReturnType<typeof proxyTo>>): Promise<void> {
  const c = client(p);
  await once(c, 'connect');
  c.write('one');
  await until(() => !on(p).some((t) => t.endsWith(':drop')));
  c.write('two');
  await once(c, 'data');
}

/**
 * A drill playing `runs` in one step at its start, over a load that needs no network; it is ended
 * (aborted, after which it takes its steps' faults off as at any end) once the step is done,
 * however long that takes on a loaded machine.
 */
async function drillWith(...runs: (() => unknown)[]): Promise<void> {
  const stop = new AbortController();
  const done = drill({
    print: false,
    signal: stop.signal,
    load: { request: () => true, rate: 20, duration: 60_000 },
    steps: [
      {
        at: 0,
        name: 'step',
        run: async () => {
          for (const run of runs) await run();
          stop.abort(new Error('the step is done'));
        },
      },
    ],
  });
  await expect(done).rejects.toThrow('the step is done');
}

describe('outside drills, a handle takes off its own toxic', () => {
  it('a stale handle (its toxic replaced since) leaves the later toxic of its name on', async () => {
    const p = await proxyTo(await echo());
    const first = p.add({ type: 'latency', name: 'lag', latency: 1_000 });
    first.remove();
    p.add({ type: 'latency', name: 'lag', latency: 50 });
    first.remove(); // again, from a finally
    expect(on(p)).toEqual(['lag:latency:50']);
  });

  it('a handle whose toxic replaced the user’s puts the user’s back', async () => {
    const p = await proxyTo(await echo());
    p.add({ type: 'latency', name: 'slow', latency: 100 });
    const fault = p.add({ type: 'latency', name: 'slow', latency: 5_000 });
    fault.remove();
    expect(on(p)).toEqual(['slow:latency:100']);
    // remove(name) takes off what is on under the name, and brings nothing back.
    expect(p.remove('slow')).toBe(true);
    expect(on(p)).toEqual([]);
  });
});

describe('a drop that spent itself puts back what it replaced', () => {
  it('outside drills: the user’s latency of its name is on again after the lost reply', async () => {
    const p = await proxyTo(await echo());
    p.add({ type: 'latency', name: 'x', latency: 1 });
    p.add({ type: 'drop', name: 'x', chunks: 1 });
    await lostReplyThenOne(p);
    expect(on(p)).toEqual(['x:latency:1']);
  });

  it('in a drill: the user’s latency is on again once the step’s drop is spent, and after the drill', async () => {
    const p = await proxyTo(await echo());
    p.add({ type: 'latency', name: 'x', latency: 1 });
    const during: string[][] = [];
    await drillWith(
      () => p.add({ type: 'drop', name: 'x', chunks: 1 }),
      async () => {
        await lostReplyThenOne(p);
        during.push(on(p));
      },
    );
    expect(during).toEqual([['x:latency:1']]);
    expect(on(p)).toEqual(['x:latency:1']);
  });
});

describe('a step’s accept() does not end the user’s refusal for good', () => {
  it('refused before the drill; a step kills then restores: it listens during the drill, refuses after it', async () => {
    const p = await proxyTo(await echo());
    await p.refuse();
    const during: boolean[] = [];
    await drillWith(
      () => p.kill(),
      () => p.restore(),
      () => during.push(p.snapshot().listening),
    );
    expect(during).toEqual([true]);
    expect(p.snapshot().listening).toBe(false);
  });

  it('refused before the drill; a step accepts: it refuses after the drill, and the user’s accept() ends it', async () => {
    const p = await proxyTo(await echo());
    await p.refuse();
    await drillWith(() => p.accept());
    expect(p.snapshot().listening).toBe(false);
    await p.accept();
    expect(p.snapshot().listening).toBe(true);
  });
});
