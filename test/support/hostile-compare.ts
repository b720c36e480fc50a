/**
 * Run as a child process by the hostile review of failover: two servers both claim primary (a
 * split brain) and the user's `roles.compare` throws on one of the tokens (a server that reports
 * no token). Prints the write's outcome, or `hung`.
 */
import { createBus } from '@holdfast/core';
import { failover } from '@holdfast/failover';

const api = failover({
  bus: createBus(),
  policies: false,
  endpoints: ['a', 'b'].map((name) => ({ name, target: name })),
  roles: {
    check: (e) => (e.name === 'a' ? { role: 'primary', token: [2, 100] } : { role: 'primary' }),
    compare: (x, y) => ((x as number[])[0] as number) - ((y as number[])[0] as number),
    interval: 100,
  },
});
await new Promise((resolve) => setTimeout(resolve, 300));
const outcome = await api
  .execute((e) => e.name)
  .then(
    (name) => `wrote to ${name}`,
    (error: Error & { code?: string }) => `rejected: ${error.code ?? error.message}`,
  );
console.log(outcome);
api.dispose();
