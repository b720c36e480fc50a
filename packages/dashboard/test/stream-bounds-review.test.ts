/**
 * The event stream's bounds, attacked: a page sent a snapshot larger than `maxBufferedBytes` has
 * one `interval` to take it, as documented, not until the next state change (a fleet of breakers
 * flapping, the very time someone opens the page, dropped every page that was not on loopback);
 * and `close()` cuts a page that does not read, rather than leave it its connection and snapshot.
 */
import type { ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import { recordWarnings, tick } from '../../../test/support/warnings.js';
import { handClock } from './fakes.js';
import { sleep, streamPages, until } from './stream-pages.js';

const warnings = recordWarnings();
const { serve, stuckPage } = streamPages();

describe('dashboard: a page behind on a snapshot larger than maxBufferedBytes', () => {
  it('is not dropped by a state change that comes before one interval has passed, and is at the next interval', async () => {
    const clock = handClock();
    const maxBufferedBytes = 64 * 1024;
    const { dash, port, responses, snapshot, breakers } = await serve(3_000, {
      clock,
      interval: 1_000,
      maxBufferedBytes,
    });
    stuckPage(port);
    await until(() => dash.clients === 1, 'the page');
    const page = () => responses[0] as ServerResponse;
    // The kernel's buffers take the first snapshots; then one is left in the server, more than the bound.
    for (let passed = 0; page().writableLength <= maxBufferedBytes && passed < 10; passed++) {
      clock.pass(1_000);
      await sleep(50);
    }
    expect(page().writableLength).toBeGreaterThan(maxBufferedBytes);
    expect(dash.clients).toBe(1);
    // A breaker opens, and another closes, within the interval: the change and the snapshot after it.
    breakers[0]?.open();
    breakers[1]?.open();
    breakers[1]?.close();
    await sleep(50);
    expect(dash.clients).toBe(1);
    expect(page().destroyed).toBe(false);
    clock.pass(1_000);
    await until(() => dash.clients === 0, 'the page dropped at the interval');
    expect((await snapshot()).stream).toEqual({ clients: 0, dropped: 1, refused: 0 });
    await tick();
    expect(warnings.filter((w) => w.code === 'HOLDFAST_DASHBOARD_SLOW_PAGE')).toHaveLength(1);
  }, 20_000);

  it('close() with it open lets its connection go: nothing left holds what it was not sent', async () => {
    const clock = handClock();
    const maxBufferedBytes = 64 * 1024;
    const { dash, port, responses } = await serve(3_000, { clock, interval: 1_000, maxBufferedBytes });
    stuckPage(port);
    await until(() => dash.clients === 1, 'the page');
    const page = () => responses[0] as ServerResponse;
    for (let passed = 0; page().writableLength === 0 && passed < 10; passed++) {
      clock.pass(1_000);
      await sleep(50);
    }
    expect(page().writableLength).toBeGreaterThan(0);
    dash.close();
    await sleep(50);
    expect(dash.clients).toBe(0);
    // Ended to flush, its socket held the last snapshot (and the connection) until the page read.
    expect(page().socket?.destroyed ?? true).toBe(true);
  }, 20_000);
});
