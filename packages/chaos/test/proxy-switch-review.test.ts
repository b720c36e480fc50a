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
import { afterEach, describe, expect, it } from 'vitest';
import { chaosSwitch, drill } from '../src/index.js';
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
        timeout: 200,
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
