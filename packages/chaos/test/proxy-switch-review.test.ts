/**
 * Review: the kill switch and the fault proxy. The README and docs/chaos.md say `chaosSwitch.off()`
 * (or `HOLDFAST_CHAOS=off`) turns every injection of the process off at once, and count a proxy's
 * toxics among the injections (`chaos.toxic`). An operator who throws the switch mid-drill expects
 * the wire to heal: held bytes delivered, the port accepting again, no toxic shown on.
 */
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { resolve } from 'node:path';
import { createBus } from '@holdfast/core';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { chaosSwitch, drill, type Toxic } from '../src/index.js';
import { client, listen, proxyTo, tick } from './support/review.js';

afterEach(() => chaosSwitch.on());

/** An echo upstream. */
const echo = () =>
  listen((s) => {
    s.on('data', (b) => s.write(b));
  });

/** Connects to the proxy: 'connected', or the error code. */
async function connects(port: number): Promise<string> {
  const c = client({ port } as never);
  // once() rejects with the socket's error: a refused connection reads as its code.
  return once(c, 'connect').then(
    () => 'connected',
    (e: NodeJS.ErrnoException) => e.code ?? 'error',
  );
}

describe('faultProxy review: the kill switch', () => {
  it('chaosSwitch.off() lifts a freeze: the held bytes arrive, and every toxic is announced off', async () => {
    const bus = createBus();
    const active = new Map<string, boolean>();
    bus.on('chaos.toxic', (e) => active.set(e.name, e.active));
    const p = await proxyTo(await echo(), { bus });
    p.add({ type: 'latency', latency: 60_000 });
    p.freeze();
    const c = client(p);
    let got = '';
    c.on('data', (b) => (got += b));
    await once(c, 'connect');
    c.write('held');
    await tick(100);
    expect(got).toBe('');
    chaosSwitch.off();
    for (let i = 0; i < 100 && got !== 'held'; i++) await tick(10);
    expect(got, 'the bytes a frozen proxy held, once the kill switch is off').toBe('held');
    expect([...active].filter(([, on]) => on)).toEqual([]);
    expect(p.snapshot().toxics).toEqual([]);
  });

  it('chaosSwitch.off() brings a killed proxy back: new connections are accepted', async () => {
    const p = await proxyTo(await echo());
    await p.kill();
    expect(await connects(p.port)).toBe('ECONNREFUSED');
    chaosSwitch.off();
    await tick(50);
    expect(await connects(p.port), 'a connection to a killed proxy once the kill switch is off').toBe('connected');
  });

  it('while the switch is off, toxics, kill() and resetAll() touch no byte; on() lets them act again', async () => {
    const p = await proxyTo(await echo());
    const c = client(p);
    await once(c, 'connect');
    let closed = false;
    c.on('close', () => (closed = true));
    chaosSwitch.off();
    p.add({ type: 'reset' });
    p.freeze();
    await p.kill();
    p.resetAll();
    let got = '';
    c.on('data', (b) => (got += b));
    c.write('through');
    for (let i = 0; i < 100 && got !== 'through'; i++) await tick(10);
    expect(got, 'bytes through a proxy whose toxics the kill switch holds off').toBe('through');
    expect(closed).toBe(false);
    expect(await connects(p.port)).toBe('connected');
    expect(p.snapshot()).toMatchObject({ listening: true, toxics: [] });
    chaosSwitch.on();
    p.add({ type: 'reset' });
    await tick(50);
    expect(closed, 'a reset once the switch is on again').toBe(true);
  });

  it('a drill whose operator throws the switch mid-drill: the kill step after it harms nothing', async () => {
    const p = await proxyTo(await echo());
    const result = await drill({
      name: 'switch thrown mid-drill',
      print: false,
      load: {
        rate: 50,
        duration: 900,
        timeout: 2_000,
        request: async () => {
          const c = client(p);
          await once(c, 'connect');
          c.write('x');
          await once(c, 'data');
          c.destroy();
        },
      },
      steps: [
        { at: 100, name: 'operator: kill switch', run: () => chaosSwitch.off() },
        { at: 200, name: 'kill the upstream', run: () => p.kill() },
        { at: 200, name: 'freeze it too', run: () => p.freeze() },
      ],
      objectives: { maxFailedShare: 0 },
    });
    expect(result.load.failed, 'requests failed after the kill switch was thrown').toBe(0);
    expect(result.passed).toBe(true);
  });

  it('HOLDFAST_CHAOS=off in the environment: kill() refuses nothing, a freeze holds nothing', () => {
    const script = `
      import { once } from 'node:events';
      import { connect, createServer } from 'node:net';
      import { faultProxy } from '@holdfast/chaos';
      const up = createServer((s) => s.on('data', (b) => s.write(b))).listen(0, '127.0.0.1');
      await once(up, 'listening');
      const proxy = await faultProxy({ target: { port: up.address().port } });
      await proxy.kill();
      proxy.freeze();
      const c = connect(proxy.port, '127.0.0.1');
      const got = await Promise.race([
        once(c, 'connect').then(
          () => { c.write('x'); return once(c, 'data').then(([b]) => String(b)); },
          (e) => e.code,
        ),
        new Promise((r) => setTimeout(() => r('timed out'), 2000)),
      ]);
      console.log(JSON.stringify({ got }));
      c.destroy();
      await proxy.close();
      up.close();
    `;
    const child = spawnSync(
      process.execPath,
      ['--conditions=@holdfast/source', '--import', 'tsx', '--input-type=module', '-e', script],
      {
        cwd: resolve(import.meta.dirname, '..'),
        env: { ...process.env, HOLDFAST_CHAOS: 'off' },
        encoding: 'utf8',
        timeout: 30_000,
      },
    );
    expect(child.stderr).toBe('');
    expect(JSON.parse(child.stdout)).toEqual({ got: 'x' });
  }, 30_000);
});

const toxic: fc.Arbitrary<Toxic> = fc
  .oneof(
    fc.record({ type: fc.constant('latency' as const), latency: fc.integer({ min: 0, max: 50 }) }),
    fc.record({ type: fc.constant('bandwidth' as const), rate: fc.integer({ min: 1_000, max: 100_000 }) }),
    fc.record({ type: fc.constant('blackhole' as const) }),
    fc.record({ type: fc.constant('slicer' as const), size: fc.integer({ min: 1, max: 64 }) }),
  )
  .chain((t) => fc.constantFrom('a', 'b', 'c').map((name) => ({ ...t, name }) as Toxic));

const op = fc.oneof(
  fc.record({ kind: fc.constant('add' as const), toxic }),
  fc.record({ kind: fc.constant('remove' as const), name: fc.constantFrom('a', 'b', 'c', 'freeze') }),
  fc.record({
    kind: fc.constantFrom(
      'freeze' as const,
      'kill' as const,
      'refuse' as const,
      'accept' as const,
      'restore' as const,
      'off' as const,
      'on' as const,
    ),
  }),
);

describe('faultProxy review: the kill switch as a state machine', () => {
  it('property: while off, no toxic is on and the proxy listens; every toxic announced on is announced off', async () => {
    const port = await echo();
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 16 }), async (ops) => {
        chaosSwitch.on();
        const bus = createBus();
        const active = new Map<string, boolean>();
        bus.on('chaos.toxic', (e) => {
          expect(active.get(e.name) ?? false, `${e.name} announced ${e.active ? 'on' : 'off'} twice`).toBe(!e.active);
          active.set(e.name, e.active);
        });
        const p = await proxyTo(port, { bus });
        const on = new Map<string, string>();
        // Added again under its name, a toxic goes to the end of the list.
        const put = (name: string, type: string) => {
          on.delete(name);
          on.set(name, type);
        };
        let listening = true;
        let off = false;
        for (const o of ops) {
          switch (o.kind) {
            case 'add':
              p.add(o.toxic);
              if (!off) put(o.toxic.name as string, o.toxic.type);
              break;
            case 'remove':
              expect(p.remove(o.name)).toBe(on.delete(o.name));
              break;
            case 'freeze':
              p.freeze();
              if (!off) put('freeze', 'blackhole');
              break;
            case 'kill':
            case 'refuse':
              await p[o.kind]();
              if (!off) listening = false;
              break;
            case 'accept':
              await p.accept();
              listening = true;
              break;
            case 'restore':
              await p.restore();
              on.clear();
              listening = true;
              break;
            case 'off':
              chaosSwitch.off();
              await p.accept(); // in turn after the restore the switch began
              off = true;
              on.clear();
              listening = true;
              break;
            case 'on':
              chaosSwitch.on();
              off = false;
              break;
          }
          expect(p.snapshot().listening).toBe(listening);
          expect(p.snapshot().toxics.map((t) => `${t.name}:${t.type}`)).toEqual(
            [...on].map(([name, type]) => `${name}:${type}`),
          );
          expect((await connects(p.port)) === 'connected').toBe(listening);
          if (off) expect(p.snapshot()).toMatchObject({ listening: true, toxics: [] });
        }
        await p.close();
        expect([...active].filter(([, a]) => a)).toEqual([]);
      }),
      { numRuns: 40, seed: Number(process.env.FC_SEED ?? 20261204) },
    );
    chaosSwitch.on();
  }, 120_000);
});
