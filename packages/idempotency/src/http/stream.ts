import { PassThrough, Readable } from 'node:stream';
import { errorLabel } from '@holdfast/core';
import type { OutgoingHeaders, Run } from './engine.js';

/**
 * Passes a streamed body through while `run` collects it; the stream ends for the client only
 * once the response is stored. If the client goes away, the source is still read to the end
 * (up to the size limit) so its result is stored all the same.
 */
export function teeStream(source: Readable, run: Run, status: number, headers: OutgoingHeaders): Readable {
  const out = new PassThrough();
  let ended = false;
  source.on('data', (chunk: unknown) => {
    run.body.add(chunk);
    if (out.destroyed) {
      // Nobody reads any more: keep going only while the body can still be stored.
      if (!run.body.storable) source.destroy();
    } else if (!out.write(chunk)) {
      source.pause();
    }
  });
  out.on('drain', () => source.resume());
  out.once('close', () => {
    if (!ended) source.resume();
  });
  source.once('end', () => {
    ended = true;
    void run.finish(status, headers).then(() => out.end());
  });
  source.once('error', (error) => {
    ended = true;
    void run.abandon(errorLabel(error));
    out.destroy(error);
  });
  source.once('close', () => {
    if (!ended) void run.abandon('E_INCOMPLETE');
  });
  return out;
}

/** Whether a reply payload is a Node stream or a web ReadableStream, and as a Node stream. */
export function asNodeStream(payload: unknown): Readable | undefined {
  if (payload instanceof Readable) return payload;
  if (typeof (payload as { pipe?: unknown })?.pipe === 'function') return payload as Readable;
  if (typeof ReadableStream !== 'undefined' && payload instanceof ReadableStream) {
    return Readable.fromWeb(payload as import('node:stream/web').ReadableStream);
  }
  return undefined;
}
