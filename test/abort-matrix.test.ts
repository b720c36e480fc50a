/**
 * Abort precedence, every policy × every abort timing × both outcomes: the rules of
 * docs/concepts.md ("Aborts: the rules"), as one table.
 *
 * - aborted before start: rejects with the caller's reason; the function never runs;
 * - aborted during an attempt: rejects with the caller's reason, whatever the attempt does after;
 * - aborted during a backoff wait: rejects with the caller's reason; no further attempt runs;
 * - aborted after the call settled: changes nothing;
 * - `retry.giveUp`, when emitted for an aborted call, says `aborted`.
 */

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { circuitBreaker } from '@holdfast/breaker';
import { createBus, type EventOf, fallback, hedge, pipeline, timeout } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { resilientFetch } from '@holdfast/fetch';
import { adaptiveConcurrency, adaptiveThrottle, bulkhead, tokenBucket } from '@holdfast/limit';
import { retry } from '@holdfast/retry';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** The work of one try: resolves with a value or rejects with an error carrying an HTTP status. */
type Attempt = (n: number) => Promise<string>;

interface Subject {
  readonly name: string;
  /** Whether the subject waits a backoff between tries. */
  readonly waits: boolean;
  run(attempt: Attempt, signal: AbortSignal, bus: ReturnType<typeof createBus>): Promise<unknown>;
}

const failure = (status: number) => Object.assign(new Error(`HTTP ${status}`), { status });
const backoff = { initialDelay: 2_000 }; // long: an abort always falls inside the wait

const subjects: Subject[] = [
  {
    name: 'retry',
    waits: true,
    run: (attempt, signal, bus) =>
      retry({ bus, budget: false, jitter: 'none', maxAttempts: 2, backoff }).execute((c) => attempt(c.attempt), {
        signal,
      }),
  },
  {
    name: 'breaker',
    waits: false,
    run: (attempt, signal, bus) =>
      circuitBreaker({ bus, policies: false }).execute((c) => attempt(c.attempt), { signal }),
  },
  {
    name: 'timeout',
    waits: false,
    run: (attempt, signal, bus) => timeout(10_000, { bus }).execute((c) => attempt(c.attempt), { signal }),
  },
  {
    name: 'pipeline(timeout, retry, breaker, timeout)',
    waits: true,
    run: (attempt, signal, bus) =>
      pipeline(
        timeout(10_000, { bus }),
        retry({ bus, budget: false, jitter: 'none', maxAttempts: 2, backoff }),
        circuitBreaker({ bus, policies: false }),
        timeout(10_000, { bus }),
      ).execute((c) => attempt(c.attempt), { signal }),
  },
  {
    name: 'failover',
    waits: false,
    run: (attempt, signal, bus) => {
      const set = failover({
        endpoints: ['a', 'b'],
        retry: { maxAttempts: 2, retryOn: (e) => (e as { status?: number }).status === 503, budget: false },
        bus,
        policies: false,
      });
      return set.execute((_endpoint, c) => attempt(c.attempt), { signal }).finally(() => set.dispose());
    },
  },
  {
    name: 'resilientFetch',
    waits: true,
    run: async (attempt, signal, bus) => {
      current = attempt;
      const http = resilientFetch({ bus, budget: false, retry: { maxAttempts: 2, backoff, jitter: 'none' } });
      try {
        const res = await http(url, { signal });
        if (!res.ok) throw failure(res.status);
        return await res.text();
      } finally {
        http.dispose();
      }
    },
  },
  {
    name: 'hedge (unsafe: one attempt)',
    waits: false,
    run: (attempt, signal, bus) =>
      hedge({ delay: 10_000, bus, policies: false }).execute((c) => attempt(c.attempt), { signal }),
  },
  {
    // `on` leaves the 404 alone, so a failure after the call settled reaches the caller as it is.
    name: 'fallback',
    waits: false,
    run: (attempt, signal, bus) =>
      fallback({ value: 'fallback', on: (e) => (e as { status?: number }).status !== 404, bus }).execute(
        (c) => attempt(c.attempt),
        { signal },
      ),
  },
  {
    name: 'bulkhead',
    waits: false,
    run: (attempt, signal, bus) =>
      bulkhead({ maxConcurrent: 1, bus, policies: false }).execute((c) => attempt(c.attempt), { signal }),
  },
  {
    name: 'tokenBucket',
    waits: false,
    run: (attempt, signal, bus) =>
      tokenBucket({ limit: 5, bus, policies: false }).execute((c) => attempt(c.attempt), { signal }),
  },
  {
    name: 'adaptiveConcurrency',
    waits: false,
    run: (attempt, signal, bus) =>
      adaptiveConcurrency({ algorithm: 'aimd', bus, policies: false }).execute((c) => attempt(c.attempt), { signal }),
  },
  {
    name: 'adaptiveThrottle',
    waits: false,
    run: (attempt, signal, bus) =>
      adaptiveThrottle({ bus, policies: false }).execute((c) => attempt(c.attempt), { signal }),
  },
];

// The upstream of resilientFetch: each request runs the scenario's attempt, numbered.
let current: Attempt = async () => 'ok';
let requests = 0;
let server: Server;
let url: string;
beforeAll(async () => {
  server = createServer((_req, res) => {
    current(++requests).then(
      (body) => res.end(body),
      (error: { status: number }) => {
        res.writeHead(error.status);
        res.end();
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/stock`;
});
afterAll(() => new Promise((resolve) => server.close(resolve)));

type Timing = 'before start' | 'during attempt' | 'during backoff wait' | 'after settle';
type Outcome = 'success' | 'failure';

/** Runs one cell: returns how the call settled, how many attempts began, and the giveUp reasons. */
async function cell(subject: Subject, timing: Timing, outcome: Outcome) {
  const bus = createBus();
  const giveUps: string[] = [];
  bus.on('retry.giveUp', (e: EventOf<'retry.giveUp'>) => giveUps.push(e.reason));
  const controller = new AbortController();
  const reason = new Error(`caller left (${subject.name}, ${timing}, ${outcome})`);
  let attempts = 0;
  let started!: () => void;
  const startedOnce = new Promise<void>((resolve) => {
    started = resolve;
  });
  let release!: () => void;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const settleAs = () => (outcome === 'success' ? Promise.resolve('ok') : Promise.reject(failure(404)));

  const attempt: Attempt = async () => {
    attempts++;
    started();
    if (timing === 'during attempt') {
      await gate; // the abort comes first; the attempt settles after it, ignoring its signal
      return settleAs();
    }
    if (timing === 'during backoff wait' && attempts === 1) throw failure(503); // retryable: a wait follows
    return settleAs();
  };
  if (timing === 'during backoff wait') {
    bus.on('retry.attempt', () => setTimeout(() => controller.abort(reason), 20));
  }
  if (timing === 'before start') controller.abort(reason);

  const call = subject.run(attempt, controller.signal, bus);
  const settled = call.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  if (timing === 'during attempt') {
    await startedOnce;
    controller.abort(reason);
    release();
  }
  const result = await settled;
  if (timing === 'after settle') controller.abort(reason);
  await new Promise((resolve) => setTimeout(resolve, 30)); // room for a wrong extra attempt
  return { result, attempts, giveUps, reason };
}

const timings: Timing[] = ['before start', 'during attempt', 'during backoff wait', 'after settle'];
const outcomes: Outcome[] = ['success', 'failure'];

describe.each(subjects)('abort × $name', (subject) => {
  for (const timing of timings) {
    if (timing === 'during backoff wait' && !subject.waits) continue;
    for (const outcome of outcomes) {
      it(`${timing}, attempt ${outcome === 'success' ? 'succeeds' : 'fails'}`, async () => {
        const { result, attempts, giveUps, reason } = await cell(subject, timing, outcome);
        if (timing === 'after settle') {
          // The abort came too late to matter.
          if (outcome === 'success') expect(result).toEqual({ value: 'ok' });
          else expect(result).toMatchObject({ error: { status: 404 } });
          expect(attempts).toBe(1);
          expect(giveUps.filter((r) => r === 'aborted')).toEqual([]);
          return;
        }
        // Rejects with the caller's reason, whatever the attempt did after the abort.
        expect(result).toEqual({ error: reason });
        expect(attempts).toBe(timing === 'before start' ? 0 : 1);
        expect(giveUps.every((r) => r === 'aborted')).toBe(true);
        if (timing !== 'before start' && subject.waits) expect(giveUps).toEqual(['aborted']);
      });
    }
  }
});
