import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { asciiText } from '../src/http/capture.js';
import { memoryStore } from '../src/memory-store.js';

// A replay of a small ASCII body is sent as the text those bytes spell (one write with the head,
// no copy); any other body as bytes. Either way the replay is the first response's bytes.
describe('Fastify replays: ASCII bodies as text, the same bytes', () => {
  const bodies: Record<string, Buffer> = {
    json: Buffer.from('{"id":1,"amount":4200}'),
    utf8: Buffer.from('prix: 4 200 € (été)'),
    binary: Buffer.from([0x00, 0x7f, 0x80, 0xff, 0xc3, 0x28, 0x41]),
    big: Buffer.from('y'.repeat(10_000)),
  };

  it('replays each body byte for byte, with its headers, and says what a later onSend hook sees', async () => {
    const app = Fastify();
    await app.register(idempotency, { store: memoryStore(), scope: 'global' });
    const seen: string[] = [];
    app.addHook('onSend', async (_req, reply, payload) => {
      if (reply.getHeader('idempotent-replayed') === 'true') seen.push(typeof payload);
      return payload;
    });
    let runs = 0;
    app.post('/:kind', async (req, reply) => {
      runs++;
      const body = bodies[(req.params as { kind: string }).kind] as Buffer;
      return reply.code(201).type('application/octet-stream').send(body);
    });
    for (const kind of Object.keys(bodies)) {
      const send = () =>
        app.inject({
          method: 'POST',
          url: `/${kind}`,
          headers: { 'idempotency-key': `k-${kind}`, 'content-type': 'application/json' },
          payload: '{}',
        });
      const first = await send();
      const replay = await send();
      expect(first.statusCode, first.body).toBe(201);
      expect(replay.statusCode).toBe(201);
      expect(replay.headers['idempotent-replayed']).toBe('true');
      expect(replay.rawPayload.equals(bodies[kind] as Buffer)).toBe(true);
      expect(replay.rawPayload.equals(first.rawPayload)).toBe(true);
      expect(replay.headers['content-length']).toBe(String((bodies[kind] as Buffer).byteLength));
      expect(replay.headers['content-type']).toBe('application/octet-stream');
    }
    expect(runs).toBe(4);
    expect(seen).toEqual(['string', 'object', 'object', 'object']);
    await app.close();
  });

  it('asciiText: the text only for non-empty ASCII bodies up to 8 KiB, whatever the view', () => {
    expect(asciiText(Buffer.from('{"a":1}'))).toBe('{"a":1}');
    const view = new Uint8Array([0x20, 0x41, 0x42, 0x43, 0x20]).subarray(1, 4);
    expect(asciiText(view)).toBe('ABC');
    expect(asciiText(Buffer.alloc(0))).toBeUndefined();
    expect(asciiText(Buffer.from([0x41, 0x80]))).toBeUndefined();
    expect(asciiText(Buffer.alloc(8192, 0x61))).toBe('a'.repeat(8192));
    expect(asciiText(Buffer.alloc(8193, 0x61))).toBeUndefined();
  });
});
