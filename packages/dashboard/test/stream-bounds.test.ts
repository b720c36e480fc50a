/**
 * The event stream against pages that never read (a stuck tab, a slow proxy, an attacker holding
 * connections open) on a registry of thousands of breakers: what the server keeps for them is
 * bounded, they are dropped and counted, and past `maxClients` more are refused with 503.
 */

import type { ServerResponse } from 'node:http';
import { createBus, createPolicyRegistry, HoldfastConfigError } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { recordWarnings, tick } from '../../../test/support/warnings.js';
import { type DashboardOptions, dashboard } from '../src/index.js';
import { handClock } from './fakes.js';
import { sleep, streamPages, unsent, until } from './stream-pages.js';

const warnings = recordWarnings();
const { serve, stuckPage, readingPage } = streamPages();

describe('dashboard: pages that never read', () => {
  it('40 of them on 2,000 breakers share one copy of the snapshot, and are dropped once they have not caught up for 30 s', async () => {
    const clock = handClock();
    const { dash, port, responses, snapshot } = await serve(2_000, { clock, interval: 1_000 });
    const snapshotBytes = Buffer.byteLength(JSON.stringify(await snapshot()));
    // Under maxBufferedBytes (1 MiB): a page that does not read is dropped for taking nothing.
    expect(snapshotBytes).toBeGreaterThan(800_000);
    expect(snapshotBytes).toBeLessThan(2 ** 20);
    const reader = await readingPage(port);
    await until(() => reader.snapshots >= 1, 'the reading page');
    const readerResponse = responses[0] as ServerResponse;
    // Time passes by hand, faster than the real one: the page that reads is given the real time it takes.
    const pass = async () => {
      await until(() => readerResponse.writableLength === 0, 'the reading page to catch up');
      clock.pass(1_000);
      await sleep(20);
    };
    const before = process.memoryUsage().arrayBuffers;
    for (let i = 0; i < 40; i++) stuckPage(port);
    await until(() => dash.clients === 41, '41 pages');
    // The kernel's buffers take the first snapshots; then what is unsent stays in the server.
    let passed = 0;
    while (passed < 5 && unsent(responses).filter((n) => n > 0).length < 40) {
      await pass();
      passed++;
    }
    expect(unsent(responses).filter((n) => n > 0)).toHaveLength(40);
    // Each stuck page has a snapshot unsent; the server holds one copy of it, not one per page.
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(8 * snapshotBytes);
    for (; passed < 29; passed++) await pass();
    expect(dash.clients).toBe(41);
    for (; passed < 35; passed++) await pass();
    await until(() => dash.clients <= 1, 'the stuck pages dropped');
    expect(dash.clients).toBe(1);
    expect(unsent(responses)).toEqual(responses.map(() => 0));
    // The page that reads was never dropped, and got a snapshot per interval (but those it was writing).
    expect(reader.snapshots).toBeGreaterThan(10);
    expect((await snapshot()).stream).toEqual({ clients: 1, dropped: 40, refused: 0 });
    await tick();
    const told = warnings.filter((w) => w.code === 'HOLDFAST_DASHBOARD_SLOW_PAGE');
    expect(told).toHaveLength(1);
    expect(told[0]?.message).toMatch(/had not caught up for 30 s/);
  }, 30_000);

  it('a page whose unsent bytes pass maxBufferedBytes is dropped at the next event due to it', async () => {
    const clock = handClock();
    const { dash, port, responses, snapshot } = await serve(3_000, {
      clock,
      interval: 1_000,
      maxBufferedBytes: 64 * 1024,
    });
    stuckPage(port);
    await until(() => dash.clients === 1, 'the page');
    // The kernel's buffers take the first snapshots; then the page is dropped at the next one
    // due, not after 30 s.
    let passed = 0;
    while (dash.clients > 0 && passed < 10) {
      clock.pass(1_000);
      passed++;
      await sleep(50);
    }
    expect(dash.clients).toBe(0);
    expect(passed).toBeLessThan(10);
    expect(responses[0]?.destroyed).toBe(true);
    expect((await snapshot()).stream).toEqual({ clients: 0, dropped: 1, refused: 0 });
    await tick();
    expect(warnings.find((w) => w.code === 'HOLDFAST_DASHBOARD_SLOW_PAGE')?.message).toMatch(
      /bytes unsent, past maxBufferedBytes \(65536\)/,
    );
  }, 20_000);

  it('the last page dropped by the interval itself: the next page is fed by one timer, not two', async () => {
    const clock = handClock();
    const { dash, port, responses } = await serve(3_000, { clock, interval: 1_000, maxBufferedBytes: 64 * 1024 });
    stuckPage(port);
    await until(() => dash.clients === 1, 'the page');
    for (let passed = 0; dash.clients > 0 && passed < 10; passed++) {
      clock.pass(1_000);
      await sleep(50);
    }
    expect(dash.clients).toBe(0);
    expect(responses[0]?.destroyed).toBe(true);
    const reader = await readingPage(port);
    await until(() => reader.snapshots >= 1, 'the next page');
    // A second timer left by the interval that dropped the last page ran beside the new one for good.
    expect(clock.pending()).toBe(1);
  }, 20_000);

  it('past maxClients (default 100) a page is refused with 503 and Retry-After, and counted', async () => {
    const { dash, port, snapshot } = await serve(10);
    const pages = Array.from({ length: 100 }, () => stuckPage(port));
    await until(() => dash.clients === 100, '100 pages');
    const refused = await fetch(`http://127.0.0.1:${port}/holdfast/events`);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(await refused.json()).toEqual({ error: 'too many pages follow the dashboard (maxClients 100)' });
    expect(dash.clients).toBe(100);
    expect((await snapshot()).stream).toEqual({ clients: 100, dropped: 0, refused: 1 });
    await tick();
    expect(warnings.filter((w) => w.code === 'HOLDFAST_DASHBOARD_FULL')).toHaveLength(1);
    // One leaves: the next page is taken.
    pages[0]?.destroy();
    await until(() => dash.clients === 99, 'a page gone');
    const taken = stuckPage(port);
    await until(() => dash.clients === 100, 'the next page');
    taken.destroy();
  }, 20_000);

  it('maxClients and maxBufferedBytes are checked: a bad value names the option', () => {
    const bad: [DashboardOptions, RegExp][] = [
      [{ maxClients: 0 }, /^dashboard: maxClients /],
      [{ maxClients: 1.5 }, /^dashboard: maxClients /],
      [{ maxClients: Number.NaN }, /^dashboard: maxClients /],
      [{ maxClients: '5' as never }, /^dashboard: maxClients /],
      [{ maxBufferedBytes: 1_000 }, /^dashboard: maxBufferedBytes /],
      [{ maxBufferedBytes: Number.POSITIVE_INFINITY }, /^dashboard: maxBufferedBytes /],
      [{ maxBufferedBytes: -1 }, /^dashboard: maxBufferedBytes /],
    ];
    expect(
      dashboard({ bus: createBus(), policies: createPolicyRegistry(), maxClients: 1, maxBufferedBytes: 65_536 }).path,
    ).toBe('/holdfast');
    for (const [options, message] of bad) {
      expect(() => dashboard({ bus: createBus(), policies: createPolicyRegistry(), ...options })).toThrow(
        HoldfastConfigError,
      );
      expect(() => dashboard({ bus: createBus(), policies: createPolicyRegistry(), ...options })).toThrow(message);
    }
  });
});
