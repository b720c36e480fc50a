/**
 * An outside review of the fixes for issue 15 ("every face behaves as documented"). Each `it`
 * is one promise the docs or the issue make that a user can still break; every test here
 * failed when it was written. The rules quoted are docs/concepts.md "Aborts: the rules" unless
 * said otherwise.
 */

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { circuitBreaker } from '@holdfast/breaker';
import { fallback, HoldfastConfigError, hedge, pipeline, timeout } from '@holdfast/core';
import { resilientFetch } from '@holdfast/fetch';
import { bulkhead } from '@holdfast/limit';
import { retry } from '@holdfast/retry';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Settles a promise into a value the test can compare. */
async function outcome(p: Promise<unknown>): Promise<{ ok: true; value: unknown } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await p };
  } catch (error) {
    return { ok: false, error };
  }
}

describe('aborts: "rejects with signal.reason, whatever the attempt returns or throws after"', () => {
  it('retry: an abort while an async retryOn.result runs wins (first attempt, predicate says no)', async () => {
    const controller = new AbortController();
    const reason = new Error('caller left');
    const policy = retry({
      budget: false,
      maxAttempts: 3,
      retryOn: {
        result: async () => {
          controller.abort(reason); // the caller gives up while the hook decides
          await sleep(10);
          return false;
        },
      },
    });
    const got = await outcome(policy.execute(async () => 'late value', { signal: controller.signal }));
    expect(got).toEqual({ ok: false, error: reason });
  });

  it('retry: an abort while an async retryOn.result runs wins (a later attempt, predicate says no)', async () => {
    const controller = new AbortController();
    const reason = new Error('caller left');
    let calls = 0;
    const policy = retry({
      budget: false,
      maxAttempts: 3,
      jitter: 'none',
      backoff: { type: 'constant', initialDelay: 1 },
      retryOn: {
        result: async (value) => {
          if (value === 'second') {
            controller.abort(reason);
            await sleep(10);
            return false;
          }
          return true; // the first result is retried
        },
      },
    });
    const got = await outcome(
      policy.execute(async () => (++calls === 1 ? 'first' : 'second'), { signal: controller.signal }),
    );
    expect(got).toEqual({ ok: false, error: reason });
  });

  it('timeout (cooperative): the caller aborted first, the deadline then passed, the function resolved late', async () => {
    const controller = new AbortController();
    const reason = new Error('caller left');
    const call = timeout(30).execute(
      async () => {
        await sleep(80); // ignores its signal
        return 'late value';
      },
      { signal: controller.signal },
    );
    // Before any timer of the call can fire, whatever the event loop's lag: a 5 ms timer of its own
    // ran after the 30 ms deadline once under load (Node runs a late list's due timers together).
    setImmediate(() => controller.abort(reason));
    expect(await outcome(call)).toEqual({ ok: false, error: reason });
  });

  it('timeout (cooperative): the caller aborted first, the deadline then passed, the function threw its own error', async () => {
    const controller = new AbortController();
    const reason = new Error('caller left');
    const call = timeout(30).execute(
      async () => {
        await sleep(80);
        throw new Error('function failed');
      },
      { signal: controller.signal },
    );
    // Before any timer of the call can fire, whatever the event loop's lag: a 5 ms timer of its own
    // ran after the 30 ms deadline once under load (Node runs a late list's due timers together).
    setImmediate(() => controller.abort(reason));
    expect(await outcome(call)).toEqual({ ok: false, error: reason });
  });

  it('pipeline(): an empty pipeline never runs the function for a signal aborted before the call', async () => {
    let ran = 0;
    const reason = new Error('already gone');
    const got = await outcome(pipeline().execute(async () => ++ran, { signal: AbortSignal.abort(reason) }));
    expect({ got, ran }).toEqual({ got: { ok: false, error: reason }, ran: 0 });
  });

  it('fallback() inside a pipeline: a signal aborted before the call runs neither the function nor the fallback', async () => {
    let ran = 0;
    const reason = new Error('already gone');
    const got = await outcome(
      pipeline(fallback({ value: 'fallback value' })).execute(async () => ++ran, {
        signal: AbortSignal.abort(reason),
      }),
    );
    expect({ got, ran }).toEqual({ got: { ok: false, error: reason }, ran: 0 });
  });

  it('fallback() inside a pipeline: aborted during the attempt, the function then throws its own error', async () => {
    const controller = new AbortController();
    const reason = new Error('caller left');
    const call = pipeline(fallback({ value: 'fallback value' })).execute(
      async () => {
        await sleep(30);
        throw new Error('function failed');
      },
      { signal: controller.signal },
    );
    // Before any timer of the call can fire, whatever the event loop's lag: a 5 ms timer of its own
    // ran after the 30 ms deadline once under load (Node runs a late list's due timers together).
    setImmediate(() => controller.abort(reason));
    expect(await outcome(call)).toEqual({ ok: false, error: reason });
  });
});

describe('options: "Bad options throw HoldfastConfigError naming the option path and bad value"', () => {
  it('bulkhead() refuses a queueTimeout over 2^31-1 ms (Node fires such a timer at once)', async () => {
    let made: ReturnType<typeof bulkhead> | undefined;
    let error: unknown;
    try {
      made = bulkhead({ maxConcurrent: 1, maxQueue: 1, queueTimeout: 2 ** 31 });
    } catch (e) {
      error = e;
    }
    if (made !== undefined) {
      // Accepted: then a queued call must at least not be refused at once.
      let release!: () => void;
      const first = made.execute(() => new Promise<void>((r) => (release = r)));
      const second = outcome(made.execute(async () => 'queued'));
      await sleep(50);
      release();
      await first;
      expect(await second, 'a queued call with a 24-day queueTimeout').toEqual({ ok: true, value: 'queued' });
    }
    expect(error).toBeInstanceOf(HoldfastConfigError);
    expect(String((error as Error).message)).toContain('queueTimeout');
  });
});

describe('breaker: "an AbortError (the caller gave up) ... is ignored" (breaker README)', () => {
  it('callers giving up (abort with a reason, or the function failing after the abort) never open the breaker', async () => {
    const states: Record<string, string> = {};
    const cases: [string, (c: AbortController) => void, boolean][] = [
      // [what, how the caller gives up, whether the function honours its signal]
      ['abort(new Error(...)), function honours the signal', (c) => c.abort(new Error('client disconnected')), true],
      ["abort('shutdown'), function honours the signal", (c) => c.abort('shutdown'), true],
      ['abort(), function fails on its own after the abort', (c) => c.abort(), false],
    ];
    for (const [what, giveUp, honours] of cases) {
      const breaker = circuitBreaker({ consecutiveFailures: 2, policies: false });
      for (let i = 0; i < 3; i++) {
        const controller = new AbortController();
        const call = breaker.execute(
          ({ signal }) =>
            new Promise((_resolve, reject) => {
              if (honours) signal.addEventListener('abort', () => reject(signal.reason));
              else setTimeout(() => reject(new Error('socket closed by our side')), 20);
            }),
          { signal: controller.signal },
        );
        setTimeout(() => giveUp(controller), 5);
        await call.catch(() => {});
      }
      states[what] = breaker.state;
    }
    expect(states).toEqual(Object.fromEntries(cases.map(([what]) => [what, 'closed'])));
  });
});

describe('hedge(): "Every policy follows the same rules when the caller\'s signal aborts"', () => {
  it('hedge() with its default (safe: false) never runs the function for a signal aborted before the call', async () => {
    let ran = 0;
    const reason = new Error('already gone');
    const got = await outcome(
      pipeline(hedge({ delay: 10, policies: false })).execute(async () => ++ran, { signal: AbortSignal.abort(reason) }),
    );
    expect({ got, ran }).toEqual({ got: { ok: false, error: reason }, ran: 0 });
  });
});

/** A loopback server; `hits` counts requests by path. */
async function serve(handler: Parameters<typeof createServer>[1]) {
  const hits = new Map<string, number>();
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    hits.set(path, (hits.get(path) ?? 0) + 1);
    handler?.(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { server, url, hits };
}

describe('resilientFetch against a loopback server', () => {
  let http: Awaited<ReturnType<typeof serve>>;
  beforeAll(async () => {
    http = await serve((req, res) => {
      if (req.url === '/slow') {
        setTimeout(() => res.writeHead(200).end('slow'), 500).unref();
      } else {
        res.writeHead(200).end('ok');
      }
    });
  });
  afterAll(() => {
    http.server.closeAllConnections();
    http.server.close();
  });

  it('callers who hang up (abort with a reason) do not open the host breaker for everyone else', async () => {
    const f = resilientFetch({ budget: false });
    for (let i = 0; i < 12; i++) {
      const controller = new AbortController();
      setTimeout(() => controller.abort(new Error('client disconnected')), 20);
      await f(`${http.url}/slow`, { signal: controller.signal }).catch(() => {});
    }
    // The server is healthy and answers at once; only the callers gave up.
    const got = await outcome(f(`${http.url}/fast`));
    f.dispose();
    expect(got.ok ? (got.value as Response).status : (got.error as Error).name).toBe(200);
  });
});

describe('types: "Types resolve under node, node16 and bundler" (issue 15)', () => {
  it('every subpath entry of every package has types under moduleResolution node (node10)', () => {
    // A scratch install of each package as publishing packs it (package.json with publishConfig
    // applied, a .d.ts/.d.cts wherever it points types), then tsc -moduleResolution node10.
    const scratch = mkdtempSync(join(tmpdir(), 'review-faces-types-'));
    const specifiers: string[] = [];
    try {
      for (const dir of readdirSync(join(root, 'packages'))) {
        let manifest: Record<string, unknown>;
        try {
          manifest = JSON.parse(readFileSync(join(root, 'packages', dir, 'package.json'), 'utf8'));
        } catch {
          continue;
        }
        if (manifest.private) continue;
        const published = { ...manifest, ...((manifest.publishConfig as object) ?? {}) } as Record<string, unknown>;
        const target = join(scratch, 'node_modules', ...String(manifest.name).split('/'));
        mkdirSync(target, { recursive: true });
        writeFileSync(join(target, 'package.json'), JSON.stringify(published));
        const typeFiles = new Set<string>();
        const walk = (v: unknown): void => {
          if (typeof v === 'string' && /\.d\.c?ts$/.test(v)) typeFiles.add(v);
          else if (Array.isArray(v)) v.forEach(walk);
          else if (typeof v === 'object' && v !== null) Object.values(v).forEach(walk);
        };
        walk(published.exports);
        walk(published.typesVersions);
        walk(published.types);
        for (const file of typeFiles) {
          mkdirSync(dirname(join(target, file)), { recursive: true });
          writeFileSync(join(target, file), 'export declare const entry: true;\n');
        }
        for (const sub of Object.keys((published.exports as object) ?? {})) {
          if (sub === '.' || sub.endsWith('.json')) continue;
          specifiers.push(`${manifest.name}/${sub.slice(2)}`);
        }
      }
      writeFileSync(
        join(scratch, 'types.ts'),
        `${specifiers.map((s, i) => `import { entry as e${i} } from '${s}';`).join('\n')}\nexport const all = [${specifiers.map((_, i) => `e${i}`).join(', ')}];\n`,
      );
      writeFileSync(
        join(scratch, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: { noEmit: true, strict: true, module: 'commonjs', moduleResolution: 'node10', types: [] },
          files: ['types.ts'],
        }),
      );
      let output = '';
      try {
        execFileSync(
          process.execPath,
          [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'],
          {
            cwd: scratch,
            encoding: 'utf8',
          },
        );
      } catch (error) {
        output = String((error as { stdout?: string }).stdout);
      }
      // Only "cannot find module" errors may appear, and only for the entries they name.
      expect(output.split('\n').filter((l) => /error TS/.test(l) && !/TS2307/.test(l))).toEqual([]);
      const unresolved = specifiers.filter((s) => output.includes(`'${s}'`));
      expect(specifiers.length).toBeGreaterThan(3);
      expect(unresolved, output).toEqual([]);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  });
});
