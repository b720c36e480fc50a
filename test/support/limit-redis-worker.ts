// A process sharing one Redis rate limit with another while the test breaks Redis:
// node --conditions=@holdfast/source --import tsx limit-redis-worker.ts <redis url> <open|closed> <limit> <burst> <commandTimeout> <loops>
// Prints "ready", takes from the limit in <loops> tight loops from a "go" line on stdin until a
// "stop" line, then prints one JSON line: when each allowed decision was answered, how many were
// refused, failed (LimitStoreUnavailableError) or reported as store errors, and the longest decision.
import { createInterface } from 'node:readline';
import { createBus } from '@holdfast/core';
import { LimitStoreUnavailableError } from '@holdfast/limit';
import { redisRateLimiter } from '@holdfast/limit/redis';
import { Redis } from 'ioredis';

const [url, mode, limit, burst, commandTimeout, loops] = process.argv.slice(2) as string[];
const client = new Redis(url as string);
client.on('error', () => {});
const bus = createBus();
let storeErrors = 0;
bus.on('rateLimit.storeError', () => storeErrors++);
const limiter = redisRateLimiter({
  client,
  limit: Number(limit),
  burst: Number(burst),
  interval: 1000,
  onRedisError: mode as 'open' | 'closed',
  commandTimeout: Number(commandTimeout),
  bus,
  policies: false,
});
await client.ping();
const lines = createInterface({ input: process.stdin });
const next = () => new Promise<string>((resolve) => lines.once('line', resolve));
process.stdout.write('ready\n');
await next();
let stopped = false;
void next().then(() => {
  stopped = true;
});
const allowed: number[] = [];
let refused = 0;
let unavailable = 0;
let otherErrors = 0;
let longest = 0;
const loop = async () => {
  while (!stopped) {
    const start = Date.now();
    let wait = 0;
    try {
      const d = await limiter.take('shared');
      if (d.allowed) allowed.push(Date.now());
      else {
        refused++;
        wait = Math.max(0, d.retryAfter - 2); // an eager client comes back a little early
      }
    } catch (error) {
      if (error instanceof LimitStoreUnavailableError) unavailable++;
      else otherErrors++;
      wait = 5;
    }
    longest = Math.max(longest, Date.now() - start);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
};
await Promise.all(Array.from({ length: Number(loops) }, loop));
process.stdout.write(`${JSON.stringify({ allowed, refused, unavailable, otherErrors, storeErrors, longest })}\n`);
client.disconnect();
process.exit(0);
