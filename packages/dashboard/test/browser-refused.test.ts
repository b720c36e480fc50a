/**
 * A page refused past maxClients, in a real browser: EventSource gives up for good on a 503, so
 * the page must say it is not live and ask again, and go live once a place is free.
 */
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { createBus, createPolicyRegistry } from '@holdfast/core';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { type DashboardSnapshot, dashboard } from '../src/index.js';
import { ensureChromium, executablePath } from './chromium.js';

const available = ensureChromium();

describe.skipIf(!available)('dashboard in headless Chromium, refused past maxClients', () => {
  let browser: Browser | undefined;
  let server: Server | undefined;
  const dash = dashboard({ bus: createBus(), policies: createPolicyRegistry(), interval: 250, maxClients: 1 });

  afterAll(async () => {
    await browser?.close();
    dash.close();
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
  }, 30_000);

  it('says it is not live, asks again, and goes live once a place is free', async () => {
    server = createServer(dash);
    await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    // Another page holds the one place.
    const other = connect(port, '127.0.0.1');
    other.on('error', () => {});
    other.write('GET /holdfast/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    for (let i = 0; i < 500 && dash.clients < 1; i++) await new Promise((r) => setTimeout(r, 10));
    expect(dash.clients).toBe(1);
    browser = await chromium.launch({
      executablePath,
      args: ['--headless', '--no-sandbox', '--disable-gpu'],
      timeout: 30_000,
    });
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${port}/holdfast`);
    const connection = page.locator('#connection');
    await expect.poll(() => connection.textContent(), { timeout: 10_000 }).toMatch(/^Not live: the server is busy/);
    other.destroy();
    await expect.poll(() => connection.textContent(), { timeout: 20_000 }).toBe('Live');
    expect(dash.clients).toBe(1);
    const snapshot = (await (await fetch(`http://127.0.0.1:${port}/holdfast/snapshot`)).json()) as DashboardSnapshot;
    expect(snapshot.stream.refused).toBeGreaterThanOrEqual(1);
  }, 60_000);
});
