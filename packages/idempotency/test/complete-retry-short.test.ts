import { createServer } from 'node:http';
import { createBus } from '@holdfast/core';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { StoreUnavailableError } from '../src/index.js';
import { closeAll, listenNode } from './http-support/body-apps.js';
import { slowStore } from './http-support/slow-store.js';

/**
 * A completion the store fails once (a lost reply, a failover) is retried for `completeTimeoutMs`.
 * A setting of 100 ms or less was never retried: the loop gave up with under 100 ms left, so one
 * blip left the key in progress until its lease ended (409 for every retry meanwhile).
 */
afterEach(closeAll);

describe('completeTimeoutMs of 100 ms or less', () => {
  it.each([1, 50, 100])(
    'completeTimeoutMs %i: a completion that failed once is stored on the retry; a repeat replays',
    async (completeTimeoutMs) => {
      let attempts = 0;
      const store = slowStore();
      const inner = store.complete;
      store.complete = async (key, token, outcome, ttlMs) => {
        if (++attempts === 1) throw new StoreUnavailableError('blip', 'complete', key, 'lost reply');
        return inner(key, token, outcome, ttlMs);
      };
      const events: string[] = [];
      const bus = createBus();
      bus.on('idempotency.storeError', (e) => events.push(e.operation));
      const app = express();
      app.use(idempotency({ store, scope: 'global', bus, completeTimeoutMs }));
      let runs = 0;
      app.post('/orders', (_req, res) => {
        runs++;
        res.status(201).json({ order: runs });
      });
      const url = `http://127.0.0.1:${await listenNode(createServer(app))}/orders`;
      const post = async () => {
        const response = await fetch(url, {
          method: 'POST',
          headers: { 'idempotency-key': 'k', 'content-type': 'application/json' },
          body: '{"amount":1}',
          signal: AbortSignal.timeout(5_000),
        });
        return [response.status, response.headers.get('idempotent-replayed'), await response.text()];
      };
      expect(await post()).toEqual([201, null, '{"order":1}']);
      expect(await post()).toEqual([201, 'true', '{"order":1}']);
      expect(runs).toBe(1);
      expect(attempts).toBe(2);
      expect(events).toEqual(['complete']);
    },
  );
});
