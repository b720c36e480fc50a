/**
 * The dashboard attacked in a real browser (Debian's Chromium, found or installed as in browser.test.ts): every string
 * a user can put on the page (policy, endpoint and event fields, the title) holds markup, a
 * `javascript:` URL, RTL overrides or 20,000 characters. None of it may run, fetch anything or
 * throw in the page; all of it shows as the text it is. The page's own security headers must
 * stop markup from running even if a future change let some through.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBus, createPolicyRegistry, type HoldfastEvent } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dashboard } from '../src/index.js';
import { ensureChromium, executablePath } from './chromium.js';
import { FakeBreaker, FakeFailover } from './fakes.js';

const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-sync'];
const available = ensureChromium();

const HOSTILE = [
  '<script>window.__pwned="script"</script>',
  '"><img src=x onerror="window.__pwned=\'img\'">',
  "'><svg onload=\"window.__pwned='svg'\">",
  'javascript:window.__pwned="js"',
  '</script><script>window.__pwned="close"</script>',
  '\u202Egnp.exe\u202C \u200F\u05D0\u05D1 \u{1F4A5} \uFEFF',
  `long-${'x'.repeat(20_000)}`,
];

/** What the injected markup would set, evaluated in the page (this package has no DOM types). */
const PWNED = 'window.__pwned';

/** A name as the page shows it: bidirectional overrides and isolates as their code points. */
const shownAs = (name: string) =>
  name.replace(/[\u202A-\u202E\u2066-\u2069]/g, (c) => `<U+${c.charCodeAt(0).toString(16).toUpperCase()}>`);

const ev = (e: Record<string, unknown>) => ({ time: Date.now(), ...e }) as unknown as HoldfastEvent;

describe.skipIf(!available)('dashboard in headless Chromium, under hostile input', () => {
  let browser: Browser;
  let server: Server;
  let origin: string;
  const bus = createBus();
  const policies = createPolicyRegistry();
  const dash = dashboard({
    bus,
    policies,
    interval: 100,
    title: '</title><script>window.__pwned="title"</script>',
  });

  beforeAll(async () => {
    server = createServer(dash);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await chromium.launch({ executablePath, args, headless: true, timeout: 30_000 });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    dash.close();
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
  }, 60_000);

  /** A page that records every error, dialog and request that leaves the dashboard. */
  async function open(): Promise<{ page: Page; problems: string[] }> {
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('dialog', (d) => {
      problems.push(`dialog: ${d.message()}`);
      void d.dismiss();
    });
    page.on('request', (r) => {
      if (!r.url().startsWith(`${origin}/holdfast`)) problems.push(`request: ${r.url().slice(0, 200)}`);
    });
    return { page, problems };
  }

  it('shows hostile names and event fields as text: nothing runs, nothing is fetched, no error', async () => {
    const made: { dispose(): void }[] = [];
    for (const [i, name] of HOSTILE.entries()) {
      const b = new FakeBreaker(name, bus, policies);
      b.call(10 + i, i % 2 === 0);
      made.push(b);
    }
    made.push(new FakeFailover(HOSTILE[1] as string, HOSTILE, policies));
    const { page, problems } = await open();
    try {
      await page.goto(`${origin}/holdfast`);
      await page.locator('#connection', { hasText: 'Live' }).waitFor({ timeout: 15_000 });

      // A time no Date can hold (a custom clock gone wrong): the entry is still logged, nothing throws.
      bus.emit(ev({ type: 'breaker.disable', source: 'far-time', time: 1e20 }));
      await page.locator('#log li', { hasText: 'Breaker far-time is now Disabled' }).waitFor({ timeout: 15_000 });
      expect(problems).toEqual([]);

      // Every kind of event the page shows, each field hostile, sent while the page follows.
      const breakers = made.slice(0, HOSTILE.length) as FakeBreaker[];
      for (const [i, h] of HOSTILE.entries()) {
        breakers[i]?.open();
        bus.emit(ev({ type: 'failover.switch', source: h, from: h, to: h, reason: h }));
        bus.emit(ev({ type: 'failover.eject', source: h, endpoint: h, until: 0, reason: h }));
        bus.emit(ev({ type: 'failover.panic', source: h, healthy: 0, total: 1, active: true }));
        bus.emit(ev({ type: 'health.change', source: h, endpoint: h, healthy: false }));
        bus.emit(ev({ type: 'retry.attempt', source: h, attempt: 2, delay: 1, code: h }));
        bus.emit(ev({ type: 'idempotency.claim', source: h, key: h, takeover: false }));
        bus.emit(ev({ type: 'rateLimit.reject', source: h, retryAfter: 1, code: 'E_RATE_LIMITED' }));
        bus.emit(ev({ type: 'bulkhead.reject', source: h, reason: 'full', running: 1, queued: 0, code: h }));
        bus.emit(ev({ type: 'chaos.inject', source: h, kind: h, detail: h }));
        bus.emit(ev({ type: 'chaos.toxic', source: h, name: h, toxic: h, direction: h, target: h, active: true }));
        bus.emit(ev({ type: 'chaos.drill', source: h, phase: 'step', step: h }));
        bus.emit(ev({ type: 'failover.role', source: h, endpoint: h, role: h }));
      }

      await page.locator('#log li').nth(19).waitFor({ timeout: 15_000 });
      await page
        .locator('#breakers tbody tr')
        .nth(HOSTILE.length - 1)
        .waitFor({ timeout: 15_000 });
      await page.locator('#chaos-section:not([hidden])').waitFor({ timeout: 15_000 });
      await page.locator('#limits-section:not([hidden])').waitFor({ timeout: 15_000 });
      // A few more snapshots over the same page.
      await page.waitForTimeout(400);

      const shown = await page.locator('#breakers tbody th').allTextContents();
      for (const h of HOSTILE) expect(shown).toContain(shownAs(h));
      // An override cannot make a name read as another ("\u202Egnp.exe" as "exe.png").
      expect(shown).toContain('<U+202E>gnp.exe<U+202C> \u200F\u05D0\u05D1 \u{1F4A5} \uFEFF');
      const endpoints = await page.locator('#failovers tbody th').allTextContents();
      expect(endpoints).toEqual(HOSTILE.map(shownAs));
      // A 20,000-character name wraps: every breaker's state stays on screen, not 20,000 px away.
      const rights = (await page.evaluate(
        "[...document.querySelectorAll('#breakers td.state-cell')].map((td) => td.getBoundingClientRect().right)",
      )) as number[];
      expect(rights.length).toBeGreaterThanOrEqual(HOSTILE.length);
      for (const right of rights) expect(right).toBeLessThanOrEqual(page.viewportSize()?.width ?? 0);
      expect(await page.evaluate(PWNED)).toBeUndefined();
      // Only the page's own script; no element from the input; no handler attribute anywhere.
      expect(await page.locator('script').count()).toBe(1);
      expect(await page.locator('img, iframe, object, embed, a[href]').count()).toBe(0);
      const handlers = await page.evaluate(
        "[...document.querySelectorAll('*')].filter((n) => [...n.attributes].some((a) => /^on/i.test(a.name))).length",
      );
      expect(handlers).toBe(0);
      expect(await page.title()).toBe('</title><script>window.__pwned="title"</script>');
      expect(problems).toEqual([]);
    } finally {
      await page.close();
      for (const m of made) m.dispose();
    }
  }, 60_000);

  it('serves the page with a Content-Security-Policy that stops injected markup from running', async () => {
    const { page, problems } = await open();
    try {
      const response = await page.goto(`${origin}/holdfast`);
      const headers = response?.headers() ?? {};
      const csp = headers['content-security-policy'] ?? '';
      expect(csp).toMatch(/default-src 'none'/);
      expect(csp).toMatch(/frame-ancestors 'none'/);
      expect(csp).not.toMatch(/unsafe-inline|unsafe-eval/);
      expect(headers['x-content-type-options']).toBe('nosniff');
      expect(headers['referrer-policy']).toBe('no-referrer');
      // The page still works under its policy: live, rendered, no violation reported.
      await page.locator('#connection', { hasText: 'Live' }).waitFor({ timeout: 15_000 });
      await page.locator('#updated', { hasText: 'Updated' }).waitFor({ timeout: 15_000 });
      expect(problems).toEqual([]);

      // Should a later change ever parse a name as HTML, the policy still refuses to run it or
      // to load from elsewhere.
      await page.evaluate(`{
      document.body.insertAdjacentHTML('beforeend',
        '<img src="x" onerror="window.__pwned=1"><iframe src="javascript:parent.__pwned=2"></iframe>');
      const s = document.createElement('script');
      s.textContent = 'window.__pwned = 3';
      document.body.appendChild(s);
    }`);
      await page.waitForTimeout(300);
      expect(await page.evaluate(PWNED)).toBeUndefined();
      expect(problems.some((p) => /Content Security Policy/i.test(p))).toBe(true);
    } finally {
      await page.close();
    }
  }, 60_000);

  it('keeps the credentials of a URL endpoint off the page, its snapshot and its event stream', async () => {
    const secretUrl = 'http://admin:hunter2@127.0.0.1:9/api?token=s3cr3t-token&region=eu';
    const set = failover({ name: 'upstream', endpoints: [secretUrl, 'http://127.0.0.1:10'], bus, policies });
    const { page, problems } = await open();
    // The raw event stream, read beside the page.
    const abort = new AbortController();
    const events = await fetch(`${origin}/holdfast/events`, { signal: abort.signal });
    let streamed = '';
    const reading = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of events.body as AsyncIterable<Uint8Array>) streamed += decoder.decode(chunk);
    })().catch(() => {});
    try {
      await page.goto(`${origin}/holdfast`);
      await page.locator('#connection', { hasText: 'Live' }).waitFor({ timeout: 15_000 });
      const shownName = set.snapshot().endpoints[0]?.name as string;
      expect(set.eject(shownName, { durationMs: 60_000 })).toBe(true);
      await page.locator('#log li', { hasText: 'ejected' }).waitFor({ timeout: 15_000 });
      await page.locator('#failovers th', { hasText: 'region=eu' }).waitFor({ timeout: 15_000 });
      const snapshot = await (await fetch(`${origin}/holdfast/snapshot`)).text();
      const html = await page.content();
      expect(streamed).toContain('failover.eject');
      for (const text of [html, snapshot, streamed]) {
        expect(text).not.toContain('hunter2');
        expect(text).not.toContain('s3cr3t-token');
      }
      expect(problems).toEqual([]);
    } finally {
      abort.abort();
      await reading;
      await page.close();
      set.dispose();
    }
  }, 60_000);
});
