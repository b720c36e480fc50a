import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBus, type EventOf } from '@holdfast/core';
import express from 'express';
import multer from 'multer';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { problemTypes } from '../src/http/index.js';
import { memoryStore } from '../src/index.js';
import { closeAll, closers, listenNode } from './http-support/body-apps.js';

/**
 * Uploads with multer (multipart/form-data). Mounted before the middleware, multer consumes the
 * body: its text fields land in req.body, its files in req.file / req.files, and a fingerprint of
 * req.body alone took a second upload with the same key and another file for a retry of the
 * first (its response replayed, the new file dropped). Mounted after it, the middleware hashed
 * the multipart bytes with their boundary, which every client draws afresh for each send: the
 * same upload retried got 422.
 */
afterEach(closeAll);

type Storage = 'memory' | 'disk';

/** An upload of `files` (name -> content) and `fields`, as a fetch client sends it: a new boundary each time. */
async function upload(
  port: number,
  key: string,
  files: Record<string, string>,
  fields: Record<string, string> = { note: 'n' },
  path = '/upload',
) {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) form.append(name, value);
  for (const [name, content] of Object.entries(files)) form.append(name, new Blob([content]), `${name}.txt`);
  const response = await fetch(`http://127.0.0.1:${port}${path}`, {
    method: 'POST',
    headers: { 'idempotency-key': key },
    body: form,
    signal: AbortSignal.timeout(5_000),
  });
  const text = await response.text();
  return { status: response.status, replayed: response.headers.get('idempotent-replayed'), text };
}

function storageOf(kind: Storage): multer.StorageEngine {
  if (kind === 'memory') return multer.memoryStorage();
  const dir = mkdtempSync(join(tmpdir(), 'holdfast-multer-'));
  closers.push(async () => rmSync(dir, { recursive: true, force: true }));
  return multer.diskStorage({ destination: dir });
}

/** An app whose upload route runs `before` the middleware and `after` it; the handler answers with what it got. */
async function uploadApp(before: express.RequestHandler[], after: express.RequestHandler[] = []) {
  const app = express();
  const bus = createBus();
  const mismatches: EventOf<'idempotency.mismatch'>[] = [];
  bus.on('idempotency.mismatch', (e) => mismatches.push(e));
  const ran: string[] = [];
  app.post(
    '/upload',
    ...before,
    idempotency({ store: memoryStore(), scope: 'global', bus }),
    ...after,
    (req, res, next) => {
      try {
        const uploaded = req.files ?? (req.file ? [req.file] : []);
        // fields() groups them by field, in an object without a prototype.
        const files = Array.isArray(uploaded) ? uploaded : Object.values(uploaded).flat();
        const got = files.map((f) => `${f.fieldname}=${f.size}`).join(',');
        ran.push(got);
        res.status(201).json({ files: got, note: (req.body as { note?: string }).note });
      } catch (error) {
        next(error);
      }
    },
  );
  app.use((error: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    res.status(500).json({ error: error.message, code: (error as { code?: string }).code });
  });
  return { port: await listenNode(createServer(app)), ran, mismatches };
}

/** A multipart upload of one file under `boundary`, as a client that keeps its boundary sends it. */
async function rawUpload(port: number, key: string, boundary: string, content: string) {
  const body =
    `--${boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nn\r\n` +
    `--${boundary}\r\nContent-Disposition: form-data; name="doc"; filename="doc.txt"\r\nContent-Type: text/plain\r\n\r\n${content}\r\n` +
    `--${boundary}--\r\n`;
  const response = await fetch(`http://127.0.0.1:${port}/upload`, {
    method: 'POST',
    headers: { 'idempotency-key': key, 'content-type': `multipart/form-data; boundary=${boundary}` },
    body,
    signal: AbortSignal.timeout(5_000),
  });
  return {
    status: response.status,
    replayed: response.headers.get('idempotent-replayed'),
    text: await response.text(),
  };
}

describe.each(['memory', 'disk'] as const)('multer (%s storage) mounted before idempotency()', (kind) => {
  it('the same key and boundary with another file: 422 (the first upload was replayed, the second file dropped)', async () => {
    const { port, ran } = await uploadApp([multer({ storage: storageOf(kind) }).single('doc')]);
    const first = await rawUpload(port, 'k', 'b0undary', 'invoice one');
    const second = await rawUpload(port, 'k', 'b0undary', 'invoice two');
    expect([first.status, second.status, second.replayed]).toEqual([201, 422, null]);
    expect(ran).toEqual(['doc=11']);
  });

  it('the same key with another file: 422, the handler runs once', async () => {
    const { port, ran } = await uploadApp([multer({ storage: storageOf(kind) }).single('doc')]);
    const first = await upload(port, 'k', { doc: 'invoice one' });
    const second = await upload(port, 'k', { doc: 'invoice two' }); // same size, other bytes
    expect([first.status, second.status]).toEqual([201, 422]);
    expect(JSON.parse(second.text).type).toBe(problemTypes.mismatch);
    expect(ran).toEqual(['doc=11']);
  });

  it('the same upload retried (a new boundary): the replay, the handler runs once', async () => {
    const { port, ran } = await uploadApp([multer({ storage: storageOf(kind) }).array('docs', 3)]);
    const first = await upload(port, 'k', { docs: 'a file' });
    const retry = await upload(port, 'k', { docs: 'a file' });
    expect([first.status, retry.status, retry.replayed, retry.text]).toEqual([201, 201, 'true', first.text]);
    expect(ran).toEqual(['docs=6']);
  });

  it('another file name, field or field value with the same key: 422', async () => {
    const { port, ran } = await uploadApp([multer({ storage: storageOf(kind) }).any()]);
    expect((await upload(port, 'k', { a: 'x' })).status).toBe(201);
    expect((await upload(port, 'k', { b: 'x' })).status).toBe(422);
    expect((await upload(port, 'k', { a: 'x' }, { note: 'other' })).status).toBe(422);
    expect((await upload(port, 'k', { a: 'x', b: 'y' })).status).toBe(422);
    expect(ran).toHaveLength(1);
  });
});

describe('multer fields(): files grouped by field', () => {
  it('another file in a group named __proto__: 422', async () => {
    const fields = multer({ storage: multer.memoryStorage() }).fields([{ name: '__proto__' }, { name: 'doc' }]);
    const { port, ran } = await uploadApp([fields]);
    expect((await upload(port, 'k', { ['__proto__']: 'one', doc: 'x' })).status).toBe(201);
    expect((await upload(port, 'k', { ['__proto__']: 'two', doc: 'x' })).status).toBe(422);
    expect(ran).toHaveLength(1);
  });
});

describe('multer with a storage engine that keeps the file elsewhere (not in memory, not on disk)', () => {
  it('fails the request with E_CONFIG naming the field and the fix; the handler does not run', async () => {
    const elsewhere: multer.StorageEngine = {
      _handleFile(_req, file, callback) {
        file.stream.resume();
        file.stream.once('end', () => callback(null, { size: 0 }));
      },
      _removeFile: (_req, _file, callback) => callback(null),
    };
    const { port, ran } = await uploadApp([multer({ storage: elsewhere }).single('doc')]);
    const answer = await upload(port, 'k', { doc: 'invoice one' });
    expect(answer.status).toBe(500);
    const error = JSON.parse(answer.text) as { code: string; error: string };
    expect(error.code).toBe('E_CONFIG');
    expect(error.error).toContain('"doc"');
    expect(error.error).toContain('Mount idempotency() before that middleware');
    expect(ran).toEqual([]);
  });
});

describe('idempotency() mounted before multer', () => {
  it('multer still gets the body; the same upload retried (a new boundary) replays; another file: 422', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'holdfast-multer-'));
    closers.push(async () => rmSync(dir, { recursive: true, force: true }));
    const { port, ran } = await uploadApp([], [multer({ dest: dir }).single('doc')]);
    const first = await upload(port, 'k', { doc: 'invoice one' });
    const retry = await upload(port, 'k', { doc: 'invoice one' });
    const other = await upload(port, 'k', { doc: 'invoice two' });
    expect(JSON.parse(first.text)).toEqual({ files: 'doc=11', note: 'n' });
    expect([first.status, retry.status, retry.replayed, other.status]).toEqual([201, 201, 'true', 422]);
    expect(ran).toEqual(['doc=11']);
    expect(readdirSync(dir)).toHaveLength(1);
  });
});

describe('a multipart type whose boundary the parser reads otherwise than a naive scan (review-idem)', () => {
  /**
   * `boundary=` inside another parameter's quoted value is not the boundary: multer (busboy)
   * splits on the real one, named after it. The fingerprint took the decoy's text out of the body
   * as if it were the delimiter: two uploads of different files hashed the same.
   */
  async function decoyUpload(port: number, decoy: string) {
    const body =
      `--REAL\r\nContent-Disposition: form-data; name="doc"; filename="doc.txt"\r\nContent-Type: text/plain\r\n\r\n` +
      `pay\r\n--${decoy}"to\r\n--REAL--\r\n`;
    const response = await fetch(`http://127.0.0.1:${port}/upload`, {
      method: 'POST',
      headers: {
        'idempotency-key': 'k',
        'content-type': `multipart/form-data; x="; boundary=${decoy}"; boundary=REAL`,
      },
      body,
      signal: AbortSignal.timeout(5_000),
    });
    return {
      status: response.status,
      replayed: response.headers.get('idempotent-replayed'),
      text: await response.text(),
    };
  }

  it('idempotency() before multer: two different files under the same key, the second gets 422, the handler runs once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'holdfast-multer-'));
    closers.push(async () => rmSync(dir, { recursive: true, force: true }));
    const { port, ran } = await uploadApp([], [multer({ dest: dir }).single('doc')]);
    const first = await decoyUpload(port, 'alice');
    const second = await decoyUpload(port, 'bobby'); // same size, another file
    expect(ran).toEqual(['doc=15']);
    expect([first.status, second.status, second.replayed]).toEqual([201, 422, null]);
  });
});
