import type { Bus } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { recordWarnings } from '../../../test/support/warnings.js';
import { RetryExhaustedError, retry } from '../src/index.js';
import { finish, setup } from './support.js';

const throwingBus: Bus = {
  on: () => () => {},
  once: () => () => {},
  wants: () => true,
  emit: () => {
    throw new Error('bus down');
  },
};

const codes = recordWarnings();

describe('retry() on a bus of the user’s own that throws (review)', () => {
  it('still retries to maxAttempts and gives up with RetryExhaustedError; the bus error is told once', async () => {
    const { clock } = setup();
    const policy = retry({ bus: throwingBus, clock, budget: false, jitter: 'none', maxAttempts: 3 });
    let attempts = 0;
    const call = policy
      .execute(() => {
        attempts++;
        return Promise.reject(new Error('down'));
      })
      .catch((e: unknown) => e);
    await finish(clock);
    const error = await call;
    await new Promise((resolve) => setImmediate(resolve));
    expect({ attempts, exhausted: error instanceof RetryExhaustedError, message: (error as Error).message }).toEqual({
      attempts: 3,
      exhausted: true,
      message: 'retry: gave up after 3 attempts: down',
    });
    expect(codes.filter((w) => w.code === 'HOLDFAST_BUS_ERROR')).toHaveLength(1);
  });
});
