/**
 * The dashboard in a real browser: Debian's Chromium, driven by playwright-core. A scripted
 * scenario (fake policies registering snapshots and emitting events) runs while the page is open;
 * the page must show a breaker go open and come back closed, in words. Screenshots go to
 * reports/ (a CI artifact).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { createBus, createPolicyRegistry, type HoldfastEvent } from '@holdfast/core';
import { adaptiveConcurrency, bulkhead } from '@holdfast/limit';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dashboard } from '../src/index.js';
import { ensureChromium, executablePath } from './chromium.js';
import { FakeBreaker, FakeBudget, FakeFailover } from './fakes.js';

const args = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const reports = fileURLToPath(new URL('../../../reports/', import.meta.url));

const available = ensureChromium();

describe.skipIf(!available)('dashboard in headless Chromium', () => {
  let browser: Browser;
  let server: Server;
  let page: Page;
  let timer: NodeJS.Timeout | undefined;
  const bus = createBus();
  const policies = createPolicyRegistry();
  const dash = dashboard({ bus, policies, interval: 250, title: 'holdfast — checkout service' });
  const payments = new FakeBreaker('payments', bus, policies);
  const search = new FakeBreaker('search', bus, policies);
  const db = new FakeFailover('orders-db', ['primary', 'replica-1', 'replica-2'], policies);
  const budget = new FakeBudget('shared-retry-budget', policies);

  beforeAll(async () => {
    mkdirSync(reports, { recursive: true });
    server = createServer(dash);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    browser = await chromium.launch({ executablePath, args, headless: true, timeout: 30_000 });
    page = await browser.newPage({ viewport: { width: 1200, height: 1300 } });
  }, 60_000);

  afterAll(async () => {
    clearInterval(timer);
    await browser?.close();
    dash.close();
    await new Promise((resolve) => server?.close(resolve));
  }, 30_000);

  /** Traffic: healthy calls on both breakers, a retry now and then, idempotent requests. */
  function traffic(failing: () => boolean): void {
    let n = 0;
    timer = setInterval(() => {
      n++;
      const slow = failing();
      if (payments.state !== 'open') payments.call(slow ? 900 + (n % 5) * 60 : 40 + ((n * 37) % 60), !slow);
      search.call(15 + ((n * 13) % 25), true);
      if (n % 3 === 0) {
        bus.emit({
          type: 'retry.attempt',
          source: 'payments-retry',
          time: Date.now(),
          attempt: 2,
          delay: 200,
          code: 'ECONNRESET',
        } as HoldfastEvent);
      }
      bus.emit({
        type: 'idempotency.claim',
        source: 'orders',
        time: Date.now(),
        key: `k${n}`,
        takeover: false,
      } as HoldfastEvent);
      if (n % 4 === 0) {
        bus.emit({
          type: 'idempotency.replay',
          source: 'orders',
          time: Date.now(),
          key: `k${n - 1}`,
          createdAt: 0,
        } as HoldfastEvent);
      }
    }, 40);
  }

  const stateOf = (name: string) => page.locator(`#breakers tr[data-name="${name}"] td.state-cell`);

  it('shows a breaker go open and come back closed, in words, and announces it', async () => {
    let failing = false;
    traffic(() => failing);
    db.set('replica-2', false);

    await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/holdfast`);
    await page.getByText('Live', { exact: true }).waitFor({ timeout: 10_000 });
    await stateOf('payments')
      .filter({ hasText: /^Closed$/ })
      .waitFor({ timeout: 10_000 });
    expect(await page.getByRole('heading', { level: 1 }).textContent()).toBe('holdfast — checkout service');
    expect(await page.getByRole('heading', { name: 'Circuit breakers' }).count()).toBe(1);
    expect(await page.getByRole('table', { name: /each breaker/ }).count()).toBe(1);
    expect(await page.getByRole('columnheader', { name: 'State' }).first().textContent()).toBe('State');
    expect(await page.getByRole('rowheader', { name: 'payments', exact: true }).count()).toBe(1);

    // The downstream goes bad: calls fail, the breaker opens.
    failing = true;
    await new Promise((r) => setTimeout(r, 400));
    payments.open();
    await stateOf('payments')
      .filter({ hasText: /^Open$/ })
      .waitFor({ timeout: 5_000 });
    await page
      .getByRole('status')
      .filter({ hasText: /Breaker payments is now Open/ })
      .waitFor({ state: 'attached', timeout: 5_000 });
    expect(await page.locator('#verdict').textContent()).toMatch(/^Not ready/);
    await page.screenshot({ path: `${reports}dashboard-open.png`, fullPage: true });

    // It recovers: probes pass, the breaker closes.
    failing = false;
    payments.halfOpen();
    await stateOf('payments')
      .filter({ hasText: /^Half-open$/ })
      .waitFor({ timeout: 5_000 });
    payments.close();
    await stateOf('payments')
      .filter({ hasText: /^Closed$/ })
      .waitFor({ timeout: 5_000 });
    await page
      .getByRole('status')
      .filter({ hasText: /Breaker payments is now Closed/ })
      .waitFor({ state: 'attached', timeout: 5_000 });
    expect(await page.locator('#log li').allTextContents()).toEqual([
      expect.stringContaining('Breaker payments is now Closed'),
      expect.stringContaining('Breaker payments is now Half-open'),
      expect.stringContaining('Breaker payments is now Open'),
    ]);
    expect(await page.locator('#verdict').textContent()).toMatch(/^Ready/);

    // The rest of the page: failover endpoints, counters, sparkline.
    const replica = page.locator('#failovers tr[data-name="replica-2"]');
    expect(await replica.locator('td').first().textContent()).toBe('Down');
    expect(await page.locator('#counters tr[data-name="payments-retry"] td').first().textContent()).not.toBe('0');
    expect(await page.locator('#breakers svg[role="img"]').first().getAttribute('aria-label')).toMatch(
      /^Latency of the last \d+ calls/,
    );
    await page.screenshot({ path: `${reports}dashboard.png`, fullPage: true });
    expect(existsSync(`${reports}dashboard.png`)).toBe(true);
    clearInterval(timer);
    expect(budget.name).toBe('shared-retry-budget');
  }, 60_000);

  it('shows a real bulkhead filling up and an adaptive limiter backing off, with their refusals', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const pool = bulkhead({ maxConcurrent: 2, maxQueue: 1, bus, policies, name: 'db-pool' });
    const calls = Array.from({ length: 4 }, () => pool.execute(() => held).catch(() => {}));
    const limiter = adaptiveConcurrency({
      algorithm: 'aimd',
      initialLimit: 3,
      window: { minTime: 0, minSamples: 1 },
      bus,
      policies,
      name: 'search-limit',
    });
    for (let i = 0; i < 4; i++) await limiter.execute(() => Promise.reject(new Error('overloaded'))).catch(() => {});
    try {
      await page.getByRole('heading', { name: /^Limits/ }).waitFor({ timeout: 5_000 });
      const row = page.getByRole('table', { name: /waiting in each bulkhead/ }).locator('tr[data-name="db-pool"] td');
      await row
        .first()
        .filter({ hasText: /^Warn$/ })
        .waitFor({ timeout: 5_000 });
      // State, running, queued, capacity, refused.
      expect(await row.allTextContents()).toEqual(['Warn', '2', '1', '2 + 1 queued', '1']);
      // The limit backed off from 3 on the drops; the sparkline says where to, in words.
      const learned = limiter.snapshot().limit;
      expect(learned).toBeLessThan(3);
      const spark = page.locator('#limits tr[data-name="search-limit"] svg[role="img"]');
      await page
        .locator(`#limits tr[data-name="search-limit"] svg[aria-label$="from 3 to ${learned}"]`)
        .waitFor({ timeout: 5_000 });
      expect(await spark.getAttribute('aria-label')).toMatch(/^Limit over its last \d+ values: from 3 to \d+$/);
      const refusals = page.getByRole('table', { name: /Counted on the bus/ }).locator('tr[data-name="db-pool"] td');
      expect((await refusals.allTextContents()).slice(0, 2)).toEqual(['Bulkhead full', '1']);
      await page.screenshot({ path: `${reports}dashboard-limits.png`, fullPage: true });
    } finally {
      release();
      await Promise.all(calls);
      pool.dispose();
      limiter.dispose();
    }
  }, 30_000);

  it('the page stops following when it goes away: the stream and its listeners are released', async () => {
    expect(dash.clients).toBe(1);
    await page.close();
    for (let i = 0; i < 100 && dash.clients > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(dash.clients).toBe(0);
  }, 10_000);
});
