import { createServer } from 'node:http';
import { connect as connectHttp2 } from 'node:http2';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import type { Writable } from 'node:stream';
import multipart from '@fastify/multipart';
import express from 'express';
import fc from 'fast-check';
import Fastify from 'fastify';
import multer from 'multer';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { problemTypes, requestFingerprint } from '../src/http/index.js';
import { memoryStore } from '../src/index.js';
import { closeAll, closers, expressApp, listenNode } from './http-support/body-apps.js';
import { exchange } from './http-support/raw.js';

/**
 * A hostile review of the canonical content type and of the multipart boundary left out of the
 * fingerprint: two requests that the parser reads as two different uploads must never hash equal
 * (the second would get the first's stored response: another user's, for another body).
 */
afterEach(closeAll);

type Parser = Writable & {
  on(event: 'field', listener: (name: string, value: string) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  on(event: 'close' | 'finish', listener: () => void): unknown;
};
const local = createRequire(import.meta.url);
/** busboy, as multer (Express) reads uploads. */
const busboy = createRequire(local.resolve('multer'))('busboy') as (config: object) => Parser;
/** @fastify/busboy, as @fastify/multipart reads them. */
const FastifyBusboy = createRequire(local.resolve('@fastify/multipart'))('@fastify/busboy') as new (
  config: object,
) => Parser;

/** The fields a parser reads from a body under a content type: what a handler gets. */
function fields(parser: 'busboy' | '@fastify/busboy', contentType: string, body: Buffer): Promise<string[]> {
  return new Promise((resolve) => {
    const out: string[] = [];
    let p: Parser;
    try {
      const config = { headers: { 'content-type': contentType } };
      p = parser === 'busboy' ? busboy(config) : new FastifyBusboy(config);
    } catch (error) {
      return resolve([`refused: ${(error as Error).message}`]);
    }
    p.on('field', (name, value) => out.push(`${name}=${JSON.stringify(value)}`));
    p.on('error', (error) => resolve([...out, `error: ${error.message}`]));
    p.on(parser === 'busboy' ? 'close' : 'finish', () => resolve(out));
    p.end(body);
  });
}

const fp = (contentType: string, body: Buffer) =>
  requestFingerprint({ method: 'POST', url: '/pay', contentType, body, headers: [] });

/** One part, field `to`, under the delimiter bytes given. */
const payTo = (delimiter: Buffer, to: string) =>
  Buffer.concat([
    Buffer.from('--'),
    delimiter,
    Buffer.from(`\r\nContent-Disposition: form-data; name="to"\r\n\r\n${to}\r\n--`),
    delimiter,
    Buffer.from('--\r\n'),
  ]);

/**
 * Two forms in one body: the parts under boundary "é" (as busboy looks for it: its UTF-8 bytes)
 * pay alice, those under "è" pay mallory. Each type reads its own parts, the other's are preamble
 * or epilogue.
 */
const twoForms = Buffer.concat([payTo(Buffer.from('é', 'utf8'), 'alice'), payTo(Buffer.from('è', 'utf8'), 'mallory')]);
// The header as Node hands it over: one character per byte (latin1).
const acute = 'multipart/form-data; boundary="\xe9"';
const grave = 'multipart/form-data; boundary="\xe8"';

describe('a boundary outside ASCII: busboy splits on its UTF-8 bytes, the fingerprint on its latin1 bytes', () => {
  it('two uploads busboy reads as two payees never hash equal', async () => {
    expect(await fields('busboy', acute, twoForms)).toEqual(['to="alice"']);
    expect(await fields('busboy', grave, twoForms)).toEqual(['to="mallory"']);
    expect(fp(acute, twoForms)).not.toBe(fp(grave, twoForms));
  });

  it('Express + multer: the second payee under the first payee key gets 422, not the first one replayed', async () => {
    const application = express();
    const paid: string[] = [];
    application.post('/pay', idempotency({ store: memoryStore(), scope: 'global' }), multer().none(), (req, res) => {
      paid.push(String(req.body.to));
      res.status(201).json({ paid: req.body.to });
    });
    const port = await listenNode(createServer(application));
    const send = (type: string) =>
      exchange(
        port,
        [
          Buffer.concat([
            Buffer.from(
              `POST /pay HTTP/1.1\r\nHost: localhost\r\nIdempotency-Key: k-pay\r\nContent-Type: ${type}\r\nContent-Length: ${twoForms.length}\r\n\r\n`,
              'latin1',
            ),
            twoForms,
          ]),
        ],
        { count: 1, ms: 3_000 },
      );
    const [alice] = await send(acute);
    const [mallory] = await send(grave);
    expect(alice?.status).toBe(201);
    expect(JSON.parse(alice?.body ?? '{}')).toEqual({ paid: 'alice' });
    expect({ status: mallory?.status, type: JSON.parse(mallory?.body ?? '{}').type }).toEqual({
      status: 422,
      type: problemTypes.mismatch,
    });
    expect(paid).toEqual(['alice']);
  });
});

describe('a parameter a parser takes for the boundary that the fingerprint does not', () => {
  // @fastify/busboy reads RFC 2231's `boundary*=utf-8''E` as the boundary E; the fingerprint
  // split on `boundary=X`, so bodies that differ only where X stands hashed equal.
  it("`boundary*=utf-8''E` before `boundary=`: two uploads @fastify/busboy reads differently never hash equal", async () => {
    const body = (x: string) =>
      Buffer.from(`--E\r\nContent-Disposition: form-data; name="to"\r\n\r\nalice\r\n--${x}\r\nmallory\r\n--E--\r\n`);
    const type = (x: string) => `multipart/form-data; boundary*=utf-8''E; boundary=${x}`;
    const [a, b] = [
      await fields('@fastify/busboy', type('X'), body('X')),
      await fields('@fastify/busboy', type('Y'), body('Y')),
    ];
    expect(a).not.toEqual(b);
    expect(fp(type('X'), body('X'))).not.toBe(fp(type('Y'), body('Y')));
  });

  it("a browser's boundary (WebKit's names itself a boundary) is still left out: the same form retried is one request", () => {
    const form = (boundary: string) => payTo(Buffer.from(boundary), 'alice');
    const sent = (boundary: string) => fp(`multipart/form-data; boundary=${boundary}`, form(boundary));
    expect(sent('----WebKitFormBoundary7MA4YWxkTrZu0gW')).toBe(sent('----WebKitFormBoundaryQ2x9Tc0aBdE1fGh4'));
    expect(sent('----WebKitFormBoundary7MA4YWxkTrZu0gW')).toBe(sent('----formdata-undici-026385948161'));
  });

  it('property: two requests hash equal only when busboy and @fastify/busboy each read the same fields from them', async () => {
    // Boundaries from a few characters, in and out of ASCII; delimiters in the body in either
    // encoding, so that each request holds the other's.
    const name = fc.constantFrom('D', 'E', '\xe9', '\xe8', '\xc3\xa9');
    const typeArb = fc.record({
      boundary: name,
      // Another parameter that names a boundary: RFC 2231's, or one whose name ends in it.
      other: fc.option(fc.tuple(fc.constantFrom('boundary*', 'xboundary', 'Boundary*0'), name), { nil: undefined }),
    });
    const typeOf = (t: { boundary: string; other?: [string, string] }) =>
      `multipart/form-data${t.other === undefined ? '' : `; ${t.other[0]}="${t.other[1]}"`}; boundary="${t.boundary}"`;
    const encoded = (text: string, utf8: boolean) => Buffer.from(text, utf8 ? 'utf8' : 'latin1');
    // A body of parts under several boundaries at once, each delimiter in either encoding, so
    // that one body is read differently under each type.
    const partArb = fc.record({ delimiter: name, utf8: fc.boolean(), value: fc.constantFrom('a', 'b') });
    const bodyArb = fc.array(partArb, { minLength: 1, maxLength: 4 }).map((parts) =>
      Buffer.concat(
        parts.map((p) => {
          const d = encoded(p.delimiter, p.utf8);
          return Buffer.concat([
            Buffer.from('--'),
            d,
            Buffer.from(`\r\nContent-Disposition: form-data; name="f"\r\n\r\n${p.value}\r\n--`),
            d,
            Buffer.from('--\r\n'),
          ]);
        }),
      ),
    );
    await fc.assert(
      fc.asyncProperty(typeArb, bodyArb, typeArb, bodyArb, fc.boolean(), async (typeA, bodyA, typeB, other, same) => {
        const a = { type: typeOf(typeA), body: bodyA };
        // The same body under another type, or another body.
        const b = { type: typeOf(typeB), body: same ? bodyA : other };
        if (fp(a.type, a.body) !== fp(b.type, b.body)) return;
        for (const parser of ['busboy', '@fastify/busboy'] as const)
          expect(await fields(parser, a.type, a.body)).toEqual(await fields(parser, b.type, b.body));
      }),
      { numRuns: 1_500 },
    );
  });
});

/**
 * A client that, refused with 413, keeps sending its body (a Content-Length of a terabyte): what
 * the server reads of it before it closes the connection. Writes as fast as the server reads,
 * up to `most` bytes; `closed` if the server closed the connection before that.
 */
function sendForever(
  port: number,
  head: string,
  most: number,
): Promise<{ status: number | undefined; closed: boolean; written: number }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const chunk = Buffer.alloc(65_536, 'x');
    let answer = '';
    let written = 0;
    let settled = false;
    const finish = (closed: boolean) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve({
        status: /^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ? Number(answer.slice(9, 12)) : undefined,
        closed,
        written,
      });
    };
    socket.on('data', (d: Buffer) => {
      answer += d.toString('latin1');
    });
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
    const pump = () => {
      while (!settled) {
        if (written >= most) return finish(false);
        written += chunk.length;
        if (!socket.write(chunk)) return void socket.once('drain', pump);
      }
    };
    socket.once('connect', () => {
      socket.write(head);
      pump();
    });
  });
}

const forever = (type: string) =>
  `POST /orders HTTP/1.1\r\nHost: localhost\r\nIdempotency-Key: k-forever\r\nContent-Type: ${type}\r\nContent-Length: 1000000000000\r\n\r\n`;

describe('a body refused with 413 that never ends (a client that keeps sending)', () => {
  // The rest of a refused body was discarded as it came, with no end: the server read whatever
  // the client sent, for as long as it sent it, on one socket.
  it('Express: the 413, then the connection closed after a bounded number of bytes', async () => {
    const { port, calls } = await expressApp([], { maxRequestBytes: 1_000 });
    const sent = await sendForever(port, forever('application/json'), 32 * 1_048_576);
    expect({ status: sent.status, closed: sent.closed }).toEqual({ status: 413, closed: true });
    expect(calls()).toBe(0);
  });

  it('Fastify, a file the handler streams (@fastify/multipart): the 413, then the connection closed after a bounded number of bytes', async () => {
    const app = Fastify({ forceCloseConnections: true });
    closers.push(() => app.close());
    await app.register(multipart);
    await app.register(fastifyIdempotency, { scope: 'global', store: memoryStore(), maxRequestBytes: 1_000 });
    let runs = 0;
    app.post('/orders', async (request, reply) => {
      runs++;
      await (await request.file())?.toBuffer();
      return reply.code(201).send({});
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    const sent = await sendForever(port, forever('multipart/form-data; boundary=B'), 32 * 1_048_576);
    expect({ status: sent.status, closed: sent.closed }).toEqual({ status: 413, closed: true });
    expect(runs).toBe(0);
  });
});

describe('HTTP/2: a file the handler streams (@fastify/multipart, request.file())', () => {
  // Read whole before the handler: the end of an HTTP/2 request's body was only seen when its
  // push(null) came after the read began, so a body already in (any small one) was waited for
  // forever: no answer, the handler never ran.
  it.each([
    ['a sync', false],
    ['an awaiting', true],
  ])(
    'behind %s hook: the upload runs once, its retry under a new boundary replays, another file gets 422',
    async (_, awaits) => {
      const app = Fastify({ http2: true, forceCloseConnections: true });
      closers.push(() => app.close());
      await app.register(multipart);
      if (awaits) app.addHook('onRequest', () => new Promise<void>((resolve) => setTimeout(resolve, 30)));
      await app.register(fastifyIdempotency, { scope: 'global', store: memoryStore(), maxRequestBytes: 200_000 });
      const ran: number[] = [];
      app.post('/upload', async (request, reply) => {
        const size = (await (await request.file())?.toBuffer())?.length ?? -1;
        ran.push(size);
        return reply.code(201).send({ size });
      });
      await app.listen({ port: 0, host: '127.0.0.1' });
      const port = (app.server.address() as AddressInfo).port;
      const upload = (boundary: string, content: string) =>
        new Promise<string>((resolve) => {
          const client = connectHttp2(`http://127.0.0.1:${port}`);
          const body = `--${boundary}\r\nContent-Disposition: form-data; name="doc"; filename="d.bin"\r\n\r\n${content}\r\n--${boundary}--\r\n`;
          const stream = client.request({
            ':method': 'POST',
            ':path': '/upload',
            'content-type': `multipart/form-data; boundary=${boundary}`,
            'content-length': String(body.length),
            'idempotency-key': 'k-h2',
          });
          let status = 0;
          stream.on('response', (headers) => {
            status = Number(headers[':status']);
          });
          stream.resume();
          const done = (answer: string) => {
            client.destroy();
            resolve(answer);
          };
          stream.on('end', () => done(String(status)));
          stream.on('error', () => done('error'));
          setTimeout(() => done('no answer'), 2_000).unref();
          stream.end(body);
        });
      const answers = [
        await upload('AA', 'x'.repeat(50_000)),
        await upload('BB', 'x'.repeat(50_000)),
        await upload('CC', 'y'),
      ];
      expect(answers).toEqual(['201', '201', '422']);
      expect(ran).toEqual([50_000]);
    },
  );
});

describe('HTTP/2: a body sent without Content-Length (a streamed body: fetch, browsers)', () => {
  // HTTP/2 has no Transfer-Encoding: a body of unknown length comes with neither header, and
  // the plugin took it for no body. Every body under a key hashed as none: mallory's request
  // got alice's stored response, and never ran.
  it('two different bodies under one key: the second gets 422, not the first one replayed (JSON and a streamed upload)', async () => {
    const app = Fastify({ http2: true, forceCloseConnections: true });
    closers.push(() => app.close());
    await app.register(multipart);
    await app.register(fastifyIdempotency, { scope: 'global', store: memoryStore() });
    const ran: unknown[] = [];
    app.post('/json', async (request, reply) => {
      ran.push(request.body);
      return reply.code(201).send({ got: request.body });
    });
    app.post('/file', async (request, reply) => {
      const got = (await (await request.file())?.toBuffer())?.toString();
      ran.push(got);
      return reply.code(201).send({ got });
    });
    app.post('/none', async (_request, reply) => {
      ran.push('none');
      return reply.code(201).send({});
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    const send = (path: string, type: string | undefined, body: string | undefined) =>
      new Promise<number>((resolve) => {
        const client = connectHttp2(`http://127.0.0.1:${port}`);
        const stream = client.request(
          {
            ':method': 'POST',
            ':path': path,
            'idempotency-key': `k${path.replace('/', '-')}`,
            ...(type === undefined ? {} : { 'content-type': type }),
          },
          { endStream: body === undefined },
        );
        let status = 0;
        stream.on('response', (headers) => {
          status = Number(headers[':status']);
        });
        stream.resume();
        const done = (answer: number) => {
          client.destroy();
          resolve(answer);
        };
        stream.on('close', () => done(status));
        setTimeout(() => done(-1), 2_000).unref();
        // Written in two pieces, ended after: no Content-Length, as a streamed body is sent.
        if (body !== undefined) {
          stream.write(body.slice(0, 5));
          stream.end(body.slice(5));
        }
      });
    const form = (to: string) =>
      `--B\r\nContent-Disposition: form-data; name="doc"; filename="d"\r\n\r\n${to}\r\n--B--\r\n`;
    const json = [
      await send('/json', 'application/json', '{"to":"alice"}'),
      await send('/json', 'application/json', '{"to":"mallory"}'),
    ];
    const multipartType = 'multipart/form-data; boundary=B';
    const file = [
      await send('/file', multipartType, form('alice')),
      await send('/file', multipartType, form('mallory')),
    ];
    // A request with no body at all (END_STREAM on its headers) is still one: its retry replays.
    const none = [await send('/none', undefined, undefined), await send('/none', undefined, undefined)];
    expect({ json, file, none }).toEqual({ json: [201, 422], file: [201, 422], none: [201, 201] });
    expect(ran).toEqual([{ to: 'alice' }, 'alice', 'none']);
  });
});
