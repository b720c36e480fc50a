import { mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import express from 'express';
import multer from 'multer';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { problemTypes } from '../src/http/index.js';
import { memoryStore } from '../src/index.js';
import { closeAll, expressApp, listenNode } from './http-support/body-apps.js';
import { exchange, head, keyed } from './http-support/raw.js';

/**
 * Uploads at the edges, on Express with multer: a content type in another case, a file on disk
 * gone before it was read, bodies and files that hold themselves, a body nested too deep for
 * recursion, and hostile multipart bodies. Every bad input a 4xx or the upload's own answer,
 * never a 500 from the middleware; nothing runs twice.
 */
afterEach(closeAll);

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'holdfast-multer-edges-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** An app: `before`, the middleware, `after`, then a handler that counts its runs; errors with a 4xx `status` keep it. */
async function app(before: express.RequestHandler[], after: express.RequestHandler[] = []) {
  const application = express();
  const ran: string[] = [];
  application.post(
    '/upload',
    ...before,
    idempotency({ store: memoryStore(), scope: 'global' }),
    ...after,
    (req, res) => {
      const files = req.file ? [req.file] : Array.isArray(req.files) ? req.files : [];
      ran.push(files.map((f) => `${f.fieldname}=${f.size}`).join(','));
      res.status(201).json({ ran: ran.length });
    },
  );
  application.use(
    (
      error: Error & { status?: number; code?: string },
      _req: express.Request,
      res: express.Response,
      _next: express.NextFunction,
    ) => {
      const status = typeof error.status === 'number' && error.status < 500 ? error.status : 500;
      res.status(status).json({ error: error.message, code: error.code });
    },
  );
  return { port: await listenNode(createServer(application)), ran };
}

async function post(port: number, key: string, contentType: string, body: string | Buffer) {
  const response = await fetch(`http://127.0.0.1:${port}/upload`, {
    method: 'POST',
    headers: { 'idempotency-key': key, 'content-type': contentType },
    body,
    signal: AbortSignal.timeout(5_000),
  });
  return {
    status: response.status,
    type: response.headers.get('content-type'),
    replayed: response.headers.get('idempotent-replayed'),
    text: await response.text(),
  };
}

/** A multipart body of a field and one file under `boundary`. */
const form = (boundary: string, content: string, filename = 'doc.txt') =>
  `--${boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nn\r\n` +
  `--${boundary}\r\nContent-Disposition: form-data; name="doc"; filename="${filename}"\r\nContent-Type: text/plain\r\n\r\n${content}\r\n` +
  `--${boundary}--\r\n`;

describe('a multipart type in another case (media types are case-insensitive, RFC 9110 8.3.1)', () => {
  it.each([
    ['multer before idempotency()', 'before'],
    ['idempotency() before multer', 'after'],
  ] as const)(
    '%s: sent as Multipart/Form-Data, retried as multipart/form-data under a new boundary: the replay',
    async (_, where) => {
      const parse = multer({ storage: multer.memoryStorage() }).single('doc');
      const { port, ran } = where === 'before' ? await app([parse]) : await app([], [parse]);
      const first = await post(port, 'k', 'Multipart/Form-Data; Boundary=AaB03x', form('AaB03x', 'invoice'));
      const retry = await post(port, 'k', 'multipart/form-data; boundary=----x9', form('----x9', 'invoice'));
      const other = await post(port, 'k', 'MULTIPART/FORM-DATA; BOUNDARY=q', form('q', 'invoicf'));
      expect([first.status, retry.status, retry.replayed, other.status]).toEqual([201, 201, 'true', 422]);
      expect(ran).toEqual(['doc=7']);
    },
  );
});

describe('multer diskStorage: the file is gone before the middleware reads it (a tmp cleaner)', () => {
  it('a 500 problem that names the field, not the path; nothing runs; the retry runs once', async () => {
    let remove = true;
    const storage = multer.diskStorage({ destination: dir });
    const cleaner: express.RequestHandler = (req, _res, next) => {
      if (remove && req.file) unlinkSync(req.file.path);
      next();
    };
    const { port, ran } = await app([multer({ storage }).single('doc'), cleaner]);
    const lost = await post(port, 'k', 'multipart/form-data; boundary=b1', form('b1', 'invoice'));
    expect(lost.status).toBe(500);
    expect(lost.type).toBe('application/problem+json');
    const problem = JSON.parse(lost.text) as { type: string; detail: string };
    expect(problem.type).toBe(problemTypes.uploadUnreadable);
    expect(problem.detail).toContain('"doc"');
    expect(lost.text).not.toContain(dir);
    expect(lost.text).not.toMatch(/ENOENT|\/tmp/);
    expect(ran).toEqual([]);
    remove = false;
    const retry = await post(port, 'k', 'multipart/form-data; boundary=b2', form('b2', 'invoice'));
    const again = await post(port, 'k', 'multipart/form-data; boundary=b3', form('b3', 'invoice'));
    expect([retry.status, again.status, again.replayed]).toEqual([201, 201, 'true']);
    expect(ran).toEqual(['doc=7']);
  });
});

describe('values JSON does not write, from a parser before the middleware', () => {
  const json = (port: number, key: string, text: string) => post(port, key, 'application/json', text);
  // A parser that gives Maps, Sets and bytes (superjson, devalue, a reviver): each was hashed as
  // `{}`, so another body under the same key replayed the first one's response.
  const rich: express.RequestHandler = (req, _res, next) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      text += chunk;
    });
    req.on('end', () => {
      const { to, tags, bytes } = JSON.parse(text) as { to: string; tags: string[]; bytes: number[] };
      const body = {
        to: new Map([['account', to]]),
        tags: new Set(tags),
        bytes: new Uint16Array(bytes).buffer,
        view: new DataView(new Uint8Array(bytes).buffer),
      };
      Object.assign(req, { body, _body: true });
      next();
    });
  };

  it("a Map, a Set, an ArrayBuffer or a DataView that differ: 422, not the first body's response", async () => {
    const { port, ran } = await app([rich]);
    const alice = '{"to":"alice","tags":["a"],"bytes":[1]}';
    const first = await json(port, 'k', alice);
    const same = await json(port, 'k', alice);
    expect([first.status, same.status, same.replayed]).toEqual([201, 201, 'true']);
    for (const other of [
      '{"to":"mallory","tags":["a"],"bytes":[1]}',
      '{"to":"alice","tags":["b"],"bytes":[1]}',
      '{"to":"alice","tags":["a"],"bytes":[2]}',
    ]) {
      const answer = await json(port, 'k', other);
      expect([other, answer.status, answer.replayed]).toEqual([other, 422, null]);
    }
    expect(ran).toHaveLength(1);
  });
});

describe('values that hold themselves, from a parser before the middleware', () => {
  const json = (port: number, key: string, text: string) => post(port, key, 'application/json', text);

  it('req.files with a cycle: E_CONFIG that says so (it overflowed the stack); nothing runs', async () => {
    const cyclic: express.RequestHandler = (req, _res, next) => {
      const files: Record<string, unknown> = { doc: [] };
      files.self = files;
      Object.assign(req, { files, body: {}, _body: true });
      next();
    };
    const { port, ran } = await app([cyclic]);
    const answer = await json(port, 'k', '{}');
    expect(answer.status).toBe(500);
    expect(JSON.parse(answer.text)).toMatchObject({
      code: 'E_CONFIG',
      error: expect.stringContaining('req.files holds itself'),
    });
    expect(ran).toEqual([]);
  });

  it('a parsed body with a cycle: E_CONFIG that says so; nothing runs', async () => {
    const cyclic: express.RequestHandler = (req, _res, next) => {
      const body: Record<string, unknown> = { a: { b: [] } };
      (body.a as { b: unknown[] }).b.push(body);
      Object.assign(req, { body, _body: true });
      req.resume();
      next();
    };
    const { port, ran } = await app([cyclic]);
    const answer = await json(port, 'k', '{}');
    expect(answer.status).toBe(500);
    expect(JSON.parse(answer.text)).toMatchObject({
      code: 'E_CONFIG',
      error: expect.stringContaining('body holds itself'),
    });
    expect(ran).toEqual([]);
  });

  it('a JSON body nested 50,000 deep (100 kB, within express.json()): runs once, its retry replays (it was a 500)', async () => {
    const { port, ran } = await app([express.json()]);
    const deep = `${'['.repeat(50_000)}${']'.repeat(50_000)}`;
    const first = await json(port, 'k', deep);
    const retry = await json(port, 'k', deep);
    const other = await json(port, 'k', `${'['.repeat(49_999)}1${']'.repeat(49_999)}`);
    expect([first.status, retry.status, retry.replayed, other.status]).toEqual([201, 201, 'true', 422]);
    expect(ran).toHaveLength(1);
  });
});

describe('a body over maxRequestBytes (the middleware reads it itself)', () => {
  // The rest of its body is left unread on the connection: kept alive, the next request on it
  // hung (Node's parser was still in the refused body, paused).
  it('the request after a 413 on its connection is answered (it hung: the refused body was left unread)', async () => {
    const { port, calls } = await expressApp([], { maxRequestBytes: 1_000 });
    const big = JSON.stringify({ pad: 'x'.repeat(200_000) });
    const small = JSON.stringify({ a: 1 });
    const responses = await exchange(
      port,
      [head('/orders', keyed('k1'), big.length) + big, head('/orders', keyed('k2'), small.length) + small],
      { count: 2, ms: 2_000 },
    );
    expect(responses.map((r) => r.status)).toEqual([413, 201]);
    expect(calls()).toBe(1);
  });
});

describe('hostile multipart bodies, idempotency() before multer and after it', () => {
  const part = (boundary: string, head: string, body: string) => `--${boundary}\r\n${head}\r\n\r\n${body}\r\n`;
  const file = (boundary: string, filename = 'a.txt') =>
    part(boundary, `Content-Disposition: form-data; name="doc"; filename="${filename}"`, 'x');
  const hostile: [string, string, string | Buffer][] = [
    [
      'two boundary parameters (split on the first, as busboy reads it)',
      'multipart/form-data; boundary=A; boundary=B',
      `${file('A')}--A--\r\n`,
    ],
    [
      'a filename that is not UTF-8',
      'multipart/form-data; boundary=B',
      Buffer.from(`${file('B', '\xff\xfe\xe9.txt')}--B--\r\n`, 'latin1'),
    ],
    [
      '5,000 parts (past the 1,000 a body is split into: hashed as sent)',
      'multipart/form-data; boundary=B',
      `${Array.from({ length: 5_000 }, (_, i) => part('B', `Content-Disposition: form-data; name="f${i}"`, 'v')).join('')}${file('B')}--B--\r\n`,
    ],
  ];

  it.each(['before', 'after'] as const)('idempotency() %s multer: each runs once, its retry replays', async (where) => {
    const parse = multer({ storage: multer.memoryStorage() }).any();
    const { port, ran } = where === 'before' ? await app([], [parse]) : await app([parse]);
    for (const [, type, body] of hostile) {
      const key = `k-${ran.length}`;
      const first = await post(port, key, type, body);
      const retry = await post(port, key, type, body);
      expect([first.status, retry.status, retry.replayed]).toEqual([201, 201, 'true']);
    }
    expect(ran).toEqual(['doc=1', 'doc=1', 'doc=1']);
  });
});
