import { randomUUID } from 'node:crypto';
import type { Clock, TimerHandle } from '@holdfast/core';
import type { ClaimResult, IdempotencyStore } from '../../src/index.js';

/** Counts the calls made to a store. */
export interface SpyStore extends IdempotencyStore {
  readonly counts: { claim: number; complete: number; release: number };
}

export function spy(inner: IdempotencyStore): SpyStore {
  const counts = { claim: 0, complete: 0, release: 0 };
  const extend = inner.extend;
  return {
    counts,
    // Renews leases as the store it wraps does (uncounted).
    ...(extend && { extend: (...args: Parameters<typeof extend>) => extend.apply(inner, args) }),
    onStoreError: inner.onStoreError,
    claim(...args) {
      counts.claim++;
      return inner.claim(...args);
    },
    complete(...args) {
      counts.complete++;
      return inner.complete(...args);
    },
    release(...args) {
      counts.release++;
      return inner.release(...args);
    },
  };
}

/** A store that never answers: a hung Redis, a dead network. */
export const hungStore: IdempotencyStore = {
  claim: () => new Promise<ClaimResult>(() => {}),
  complete: () => new Promise<boolean>(() => {}),
  release: () => new Promise<boolean>(() => {}),
};

/** A store whose every call fails at once. */
export const brokenStore: IdempotencyStore = {
  claim: () => Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })),
  complete: () => Promise.reject(new Error('down')),
  release: () => Promise.reject(new Error('down')),
};

export const newKey = () => `key-${randomUUID()}`;

export interface Sent {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
  readonly bytes: Buffer;
  json(): unknown;
}

/** POSTs (or another method) a body with an Idempotency-Key over real HTTP. */
export async function send(
  url: string,
  options: {
    method?: string;
    key?: string | undefined;
    body?: unknown;
    raw?: string;
    contentType?: string;
    headers?: Record<string, string>;
    signal?: AbortSignal;
  } = {},
): Promise<Sent> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.key !== undefined) headers['idempotency-key'] = options.key;
  let body: string | undefined;
  if (options.raw !== undefined) {
    body = options.raw;
    headers['content-type'] = options.contentType ?? 'text/plain';
  } else if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers['content-type'] = options.contentType ?? 'application/json';
  }
  const res = await fetch(url, { method: options.method ?? 'POST', headers, body, signal: options.signal });
  const bytes = Buffer.from(await res.arrayBuffer());
  const text = bytes.toString('utf8');
  return { status: res.status, headers: res.headers, text, bytes, json: () => JSON.parse(text) };
}

/** Polls `check` until it holds, at most `tries` times, 20 ms apart. */
export async function eventually(check: () => Promise<boolean> | boolean, tries = 250): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('condition never held');
}

/**
 * A clock without monotonic() whose readings the test sets (a user's own clock, or a wall clock
 * at epoch ms), on the real timers, unref'd, for a store's sweeps.
 */
export function settableClock(start: number): { clock: Clock; set(t: number): number } {
  let now = start;
  const clock: Clock = {
    now: () => now,
    setTimeout: (callback, ms) => setTimeout(callback, ms).unref() as TimerHandle,
    clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
  };
  return { clock, set: (t: number) => (now = t) };
}

/** Servers {@link listen} started, for {@link closeServers}. */
const listening: import('node:http').Server[] = [];

/** Starts `app` (Express's, or any with its `listen`) on a loopback port; its base URL. Close with {@link closeServers}. */
export async function listen(app: { listen(port: number, host: string): import('node:http').Server }): Promise<string> {
  const server = app.listen(0, '127.0.0.1');
  listening.push(server);
  await new Promise<void>((resolve) => server.once('listening', resolve));
  return `http://127.0.0.1:${(server.address() as import('node:net').AddressInfo).port}`;
}

/** Closes every server {@link listen} started, their connections too: `afterEach(closeServers)`. */
export async function closeServers(): Promise<void> {
  for (const server of listening.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}
