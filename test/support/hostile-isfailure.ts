/**
 * Run as a child process by the hostile review of failover: an `isFailure` written the way users
 * write it for HTTP clients (`err.response.status >= 500`) meets an error without a response (a
 * refused connection), once with a per-try timeout (argv[2] === 'timeout') and once without.
 * Prints what the call settled with, or `hung` when it did not settle within 2 s.
 */
import { createBus } from '@holdfast/core';
import { failover } from '@holdfast/failover';

const withTimeout = process.argv[2] === 'timeout';
const api = failover({
  bus: createBus(),
  policies: false,
  endpoints: ['a', 'b'],
  ...(withTimeout ? { timeout: 1_000 } : {}),
  isFailure: (error) => (error as { response: { status: number } }).response.status >= 500,
});
const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:443'), { code: 'ECONNREFUSED' });
const outcome = await Promise.race([
  api
    .execute(() => Promise.reject(refused))
    .then(
      () => 'resolved',
      (error: Error) => `rejected: ${error.message}`,
    ),
  new Promise((resolve) => setTimeout(() => resolve('hung'), 2_000)),
]);
console.log(outcome);
api.dispose();
