/**
 * A new user's run of the README's drill example (review s37): at `rate: 50` against a service
 * answering in a few hundred ms, more than 10 requests were in flight, each with an abort listener
 * of its own on the drill's signal: Node printed a MaxListenersExceededWarning on every run. And
 * the example never closed its fault proxy, so the process never exited.
 */
import { spawn } from 'node:child_process';
import { getEventListeners, once } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { drill } from '../src/index.js';

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

afterEach(() => {
  vi.restoreAllMocks();
});

/** Every AbortSignal an abort listener is added to while it runs, and the most one had at once. */
function watchAbortListeners(): { signals: Set<AbortSignal>; peak: () => number } {
  const signals = new Set<AbortSignal>();
  let peak = 0;
  const add = EventTarget.prototype.addEventListener;
  vi.spyOn(EventTarget.prototype, 'addEventListener').mockImplementation(function (
    this: EventTarget,
    ...args: Parameters<EventTarget['addEventListener']>
  ) {
    add.apply(this, args);
    const [type] = args;
    if (this instanceof AbortSignal && type === 'abort') {
      signals.add(this);
      peak = Math.max(peak, getEventListeners(this, 'abort').length);
    }
  });
  return { signals, peak: () => peak };
}

describe('drill, review s37: many requests in flight', () => {
  it('prints no warning with >10 requests in flight, and leaves no abort listener behind', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    const caller = new AbortController();
    const watched = watchAbortListeners();
    let inFlight = 0;
    let most = 0;
    try {
      const result = await drill({
        print: false,
        signal: caller.signal,
        // 300 ms a request at 100 a second: some 30 in flight at once.
        load: {
          request: async () => {
            most = Math.max(most, ++inFlight);
            await tick(300);
            inFlight--;
            return true;
          },
          rate: 100,
          duration: 1_000,
        },
        steps: [{ at: 500, name: 'nothing', run: () => {} }],
        objectives: { maxFailedShare: 0 },
      });
      expect(result.passed).toBe(true);
      expect(result.load.sent).toBeGreaterThan(50);
    } finally {
      vi.restoreAllMocks();
    }
    await tick(20); // a warning is emitted on the next tick
    process.off('warning', onWarning);
    expect(most).toBeGreaterThan(10);
    expect(warnings).toEqual([]);
    // One listener on the drill's signal serves every request in flight (a sleep's and a step's
    // besides), not one each: before, this peaked at one per request in flight.
    expect(watched.peak()).toBeLessThanOrEqual(4);
    // The drill's own signal, a step's, the caller's: nothing is left listening once it has ended.
    expect(watched.signals.size).toBeGreaterThan(0);
    const left = [...watched.signals].filter((s) => getEventListeners(s, 'abort').length > 0);
    expect(left).toHaveLength(0);
    expect(getEventListeners(caller.signal, 'abort')).toHaveLength(0);
  }, 20_000);

  it("the caller's abort still ends every request in flight, through the one listener", async () => {
    const caller = new AbortController();
    const signals: AbortSignal[] = [];
    const ran = drill({
      print: false,
      signal: caller.signal,
      load: {
        // Each hangs until its signal aborts.
        request: (_, signal) => {
          signals.push(signal);
          return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
        },
        rate: 100,
        duration: 5_000,
      },
    });
    await tick(300);
    const reason = new Error('stop the drill');
    caller.abort(reason);
    await expect(ran).rejects.toBe(reason);
    expect(signals.length).toBeGreaterThan(15);
    expect(signals.filter((s) => !s.aborted)).toHaveLength(0);
    expect(new Set(signals.map((s) => s.reason))).toEqual(new Set([reason]));
  }, 20_000);
});

describe('drill, review s37: the README example exits on its own', () => {
  it('a child running the example (built dist, a loopback upstream) exits 0 soon after proxy.close(), with no warning', async () => {
    const dist = new URL('../dist/index.js', import.meta.url).href;
    // The README's example, its service a slow loopback upstream behind the fault proxy.
    const script = `
      import { once } from 'node:events';
      import { createServer } from 'node:http';
      import { assertDrill, drill, faultProxy } from ${JSON.stringify(dist)};
      process.on('warning', (w) => {
        console.error('WARNING ' + w.name + ': ' + w.message);
        process.exitCode = 1;
      });
      const upstream = createServer((req, res) => {
        req.resume();
        req.on('end', () => setTimeout(() => res.end('{"ok":true}'), 250));
      });
      upstream.listen(0, '127.0.0.1');
      await once(upstream, 'listening');
      const proxy = await faultProxy({ target: { port: upstream.address().port } });
      try {
        const result = await drill({
          name: 'kill the upstream',
          print: false,
          load: {
            request: (i, signal) =>
              fetch(proxy.url + '/orders', {
                method: 'POST',
                signal,
                headers: { 'idempotency-key': 'drill-' + i, 'content-type': 'application/json' },
                body: '{"sku":"kettle","amount":4200}',
              }).then(async (r) => { await r.arrayBuffer(); return r.ok; }),
            rate: 50,
            duration: 2_000,
          },
          steps: [
            { at: 500, name: 'kill', run: () => proxy.kill() },
            { at: 900, name: 'restore', run: () => proxy.restore() },
          ],
          objectives: { maxFinalFailedShare: 0.2 },
        });
        if (!result.passed) console.error(result.report);
        assertDrill(result);
      } finally {
        await proxy.close();
        upstream.close();
      }
      console.log('closed');
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    let out = '';
    let closedAt: number | undefined;
    child.stdout.on('data', (b: Buffer) => {
      out += b;
      if (closedAt === undefined && out.includes('closed')) closedAt = performance.now();
    });
    child.stderr.on('data', (b: Buffer) => (out += b));
    const guard = setTimeout(() => child.kill('SIGKILL'), 25_000);
    const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    clearTimeout(guard);
    const exitedAfter = closedAt === undefined ? Number.NaN : performance.now() - closedAt;
    expect({ code, signal, out: out.trim() }).toEqual({ code: 0, signal: null, out: 'closed' });
    // Nothing of the drill's nor the proxy's holds the process once the proxy is closed.
    expect(exitedAfter).toBeLessThan(2_000);
  }, 30_000);
});
