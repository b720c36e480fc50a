import fc from 'fast-check';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { idempotent, memoryStore } from '../src/index.js';

// Review of #19: value outcomes (JSON kept after the fingerprint) and Fastify replays of bodies
// kept as text, empty bodies, 204 and 304, on memoryStore.

const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

describe('idempotent() values on memoryStore', () => {
  it('replays any JSON value equal to the first, and refuses other arguments under its key', async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue(), fc.string({ maxLength: 30 }), async (value, arg) => {
        const store = memoryStore();
        let runs = 0;
        const run = idempotent(
          async (_input: string) => {
            runs++;
            return value;
          },
          { store, key: () => 'k' },
        );
        const first = await run(arg);
        const again = await run(arg);
        // As its JSON (a replay is decoded JSON: -0 comes back as 0, as before #19).
        expect(JSON.stringify(again)).toBe(JSON.stringify(first));
        expect(runs).toBe(1);
        await expect(run(`${arg}${JSON.stringify(value)}`)).rejects.toThrow();
        expect(runs).toBe(1);
        store.dispose();
      }),
      { numRuns: 150 },
    );
  });
});

describe('Fastify replays on memoryStore', () => {
  it('are byte for byte for text, multibyte, empty, 204 and 304 responses', async () => {
    const store = memoryStore();
    const app = Fastify();
    apps.push(app);
    await app.register(idempotency, { store, scope: 'global' });
    let runs = 0;
    const latin = Buffer.from(Array.from({ length: 90 }, (_, i) => (i * 37) % 256));
    app.post('/r/:kind', async (request, reply) => {
      runs++;
      const kind = (request.params as { kind: string }).kind;
      if (kind === 'latin') return reply.type('application/octet-stream').send(latin);
      if (kind === 'utf8') return reply.type('text/plain; charset=utf-8').send('ü€𝄞 é');
      if (kind === 'empty') return reply.code(200).send('');
      if (kind === '204') return reply.code(204).send();
      return reply.code(304).send();
    });
    for (const kind of ['latin', 'utf8', 'empty', '204', '304']) {
      const send = () =>
        app.inject({
          method: 'POST',
          url: `/r/${kind}`,
          headers: { 'idempotency-key': `key-${kind}`, 'content-type': 'text/plain' },
          payload: 'x',
        });
      const first = await send();
      const again = await send();
      expect({ kind, status: again.statusCode }).toEqual({ kind, status: first.statusCode });
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.rawPayload.equals(first.rawPayload)).toBe(true);
      if (kind === 'latin') expect(again.rawPayload.equals(latin)).toBe(true);
      if (kind === 'utf8') expect(again.rawPayload.toString('utf8')).toBe('ü€𝄞 é');
    }
    expect(runs).toBe(5);
  });
});
