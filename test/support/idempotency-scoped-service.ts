/**
 * An order service whose keys are scoped to the caller (`x-user`, as authentication would set
 * it), guarded by the idempotency middleware on Redis: a child process of
 * test/idempotency-scope-processes.test.ts. argv: framework (express | fastify), Redis port.
 * Prints `listening <port>` once up, and `exec <user> <key>` each time the handler runs (the
 * side effect that must not repeat).
 */
import type { AddressInfo } from 'node:net';
import { redisStore } from '@holdfast/idempotency';
import { idempotency as expressIdempotency } from '@holdfast/idempotency/express';
import { idempotency as fastifyIdempotency } from '@holdfast/idempotency/fastify';
import express from 'express';
import Fastify from 'fastify';
import { Redis } from 'ioredis';

const [framework, redisPort] = process.argv.slice(2) as ['express' | 'fastify', string];
const client = new Redis(Number(redisPort), '127.0.0.1', { maxRetriesPerRequest: 1 });
client.on('error', () => {});
const store = redisStore({ client });
let n = 0;
/** The effect: printed, then a moment of work so that concurrent requests overlap. */
const handle = async (user: string, key: string) => {
  process.stdout.write(`exec ${user} ${key}\n`);
  await new Promise((resolve) => setTimeout(resolve, 50));
  return { owner: user, order: `${process.pid}-${++n}` };
};

if (framework === 'express') {
  const app = express();
  const user = (req: express.Request) => req.get('x-user');
  app.post('/orders', expressIdempotency({ store, scope: user, required: true }), async (req, res) => {
    res.status(201).json(await handle(String(user(req)), String(req.get('idempotency-key'))));
  });
  const server = app.listen(0, '127.0.0.1', () => {
    process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`);
  });
} else {
  const app = Fastify();
  const user = (req: { headers: Record<string, unknown> }) => req.headers['x-user'] as string | undefined;
  await app.register(fastifyIdempotency, { store, scope: user, required: true });
  app.post('/orders', async (req, reply) =>
    reply.code(201).send(await handle(String(user(req)), String(req.headers['idempotency-key']))),
  );
  await app.listen({ port: 0, host: '127.0.0.1' });
  process.stdout.write(`listening ${(app.server.address() as AddressInfo).port}\n`);
}
process.on('SIGTERM', () => process.exit(0));
