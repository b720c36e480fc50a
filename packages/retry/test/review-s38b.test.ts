// Outside review (s38b) of 9db2b5e4: bugs a user hits, each `it` failing on the current code.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRetryAfter, retry, retryBudget } from '../src/index.js';
import { setup } from './support.js';

const realSetTimeout = globalThis.setTimeout;
/** Real time: bounds every wait in this file. */
const tick = (ms: number) => new Promise<'pending'>((resolve) => realSetTimeout(() => resolve('pending'), ms));

describe('Retry-After read from an HTTP-date', () => {
  it('parseRetryAfter of a far-future HTTP-date returns more than 2^31 s, though the README says "at most 2^31 s in ms"', () => {
    const now = Date.UTC(2026, 0, 1);
    const cap = 2 ** 31 * 1000;
    // The seconds form is capped...
    expect(parseRetryAfter(String(2 ** 40), now)).toBe(cap);
    // ...the date form (a server's "never": year 9999) is not: 7,974 years in ms.
    const got = parseRetryAfter('Fri, 31 Dec 9999 23:59:59 GMT', now);
    expect(got).toBeDefined();
    expect(got as number).toBeLessThanOrEqual(cap);
  });
});

describe('maxElapsed passed during an async onRetry: the retry is not made', () => {
  // onRetry (a token refresh) takes 2 s on the policy's clock; maxElapsed is 1 s: the retry
  // decided before the hook is dropped after it, and the call gives up with 1 attempt.
  const slowHook = (clock: { setTimeout(cb: () => void, ms: number): unknown }) => () =>
    new Promise<void>((resolve) => clock.setTimeout(resolve, 2_000));

  it('the retry budget is charged for the retry that was never made: the next call sharing it is refused its retry', async () => {
    const { clock, bus } = setup();
    // One retry per 10 s window for the service (a quiet one: the floor decides).
    const budget = retryBudget({ clock, ratio: 0, minPerSecond: 0.1, ttl: 10_000 });
    const slow = retry({
      clock,
      bus,
      budget,
      jitter: 'none',
      backoff: { initialDelay: 100 },
      maxElapsed: 1_000,
      onRetry: slowHook(clock),
    });
    let slowCalls = 0;
    const first = slow
      .execute(async () => {
        slowCalls++;
        throw new Error('ECONNRESET');
      })
      .catch((e: unknown) => e);
    for (let i = 0; i < 10; i++) await clock.advance(500);
    expect(await Promise.race([first, tick(500)])).toMatchObject({ reason: 'maxElapsed', attempts: 1 });
    expect(slowCalls).toBe(1); // no retry was sent
    // Nothing was retried, yet budget.snapshot().retries is 1: the token taken before onRetry
    // is kept. (A fresh budget of the same options lets the call below retry.)
    // Another policy on the same budget, 5 s later (inside its 10 s window): its retry is due.
    const other = retry({ clock, bus, budget, jitter: 'none', backoff: { initialDelay: 100 } });
    let n = 0;
    const second = other
      .execute(async () => {
        if (++n < 2) throw new Error('ECONNRESET');
        return 'ok';
      })
      .catch((e: unknown) => e);
    for (let i = 0; i < 4; i++) await clock.advance(100);
    expect(await Promise.race([second, tick(500)])).toBe('ok');
  });

  it('a retry.attempt event announces attempt 2 that never runs: dashboards and metrics count a retry that was not made', async () => {
    const { clock, bus, of } = setup();
    const policy = retry({
      clock,
      bus,
      budget: false,
      jitter: 'none',
      backoff: { initialDelay: 100 },
      maxElapsed: 1_000,
      onRetry: slowHook(clock),
    });
    let calls = 0;
    const outcome = policy
      .execute(async () => {
        calls++;
        throw new Error('ECONNRESET');
      })
      .catch((e: unknown) => e);
    for (let i = 0; i < 10; i++) await clock.advance(500);
    expect(await Promise.race([outcome, tick(500)])).toMatchObject({ reason: 'maxElapsed', attempts: 1 });
    expect(calls).toBe(1);
    // README: "`retry.attempt`: the policy will run attempt `attempt` after `delay` ms";
    // @holdfast/dashboard counts each as a retry made. None was.
    expect(of('retry.giveUp').map((e) => e.attempts)).toEqual([1]);
    expect(of('retry.attempt').map((e) => e.attempt)).toEqual([]);
  });
});

// The CommonJS build as a user gets it, with p-retry failing to load (not installed next to it:
// a broken install, or a bundle that left it out).
describe('the CommonJS build, p-retry failing to load', () => {
  const root = resolve(import.meta.dirname, '../../..');
  const pkg = resolve(import.meta.dirname, '..');
  const tsup = join(root, 'node_modules', '.bin', 'tsup');
  const scratch = mkdtempSync(join(tmpdir(), 'holdfast-s38b-'));
  const modules = join(scratch, 'node_modules');
  const dist = join(modules, '@holdfast', 'retry', 'dist');

  beforeAll(() => {
    const core = join(root, 'packages', 'core');
    if (!existsSync(join(core, 'dist', 'index.cjs'))) execFileSync(tsup, { cwd: core, stdio: 'ignore' });
    // The package's own tsup config (with its p-retry-cjs plugin), CJS only, into the scratch project.
    execFileSync(tsup, ['--format', 'cjs', '--no-dts', '--out-dir', dist], { cwd: pkg, stdio: 'ignore' });
    writeFileSync(join(modules, '@holdfast', 'retry', 'package.json'), JSON.stringify({ name: '@holdfast/retry' }));
    symlinkSync(core, join(modules, '@holdfast', 'core'), 'dir');
    symlinkSync(realpathSync(join(pkg, 'node_modules', 'zod')), join(modules, 'zod'), 'dir');
    // No p-retry in the scratch project.
    mkdirSync(join(scratch, 'app'));
    writeFileSync(
      join(scratch, 'app', 'main.cjs'),
      `const t0 = Date.now();
process.on('exit', () => process.stdout.write(JSON.stringify({ rejectedAt, exitAt: Date.now() - t0, code })));
let rejectedAt = -1;
let code;
const { retry } = require(${JSON.stringify(join(dist, 'index.cjs'))});
retry({ budget: false, jitter: 'none', backoff: { initialDelay: 4000 } })
  .execute(async () => { throw new Error('ECONNRESET'); })
  .catch((e) => { rejectedAt = Date.now() - t0; code = e.code; });
`,
    );
  }, 60_000);

  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it('a call that rejects because p-retry cannot load leaves its 4 s backoff timer holding the process open', () => {
    const child = spawnSync(process.execPath, [join(scratch, 'app', 'main.cjs')], {
      cwd: join(scratch, 'app'),
      encoding: 'utf8',
      timeout: 9_000,
    });
    const out = JSON.parse(child.stdout) as { rejectedAt: number; exitAt: number; code: string };
    // The call rejects, and clearly: p-retry is not found.
    expect(out.code).toBe('ERR_MODULE_NOT_FOUND');
    expect(out.rejectedAt).toBeGreaterThanOrEqual(0);
    // The call is over: nothing of it may keep the process alive (the wait of a call that
    // settled must not outlive it). The process should exit at once, not 4 s later.
    expect(out.exitAt - out.rejectedAt).toBeLessThan(2_000);
  }, 10_000);
});
