import { Buffer } from 'node:buffer';
import { IncomingMessage } from 'node:http';
import { PassThrough, Readable } from 'node:stream';
import { errorLabel } from '@holdfast/core';
import type { OutgoingHeaders, Run } from './engine.js';

/**
 * Passes a streamed body through while `run` collects it; the stream ends for the client only
 * once the response is stored. A stream that failed or was destroyed before any byte went (the
 * framework then answers with its error handler) is not stored: its key is released, as for a
 * handler that throws. One that failed once the response began (`began()`: its headers went),
 * and one whose client went away (which stops the source), can never complete, and the handler
 * ran: the response-lost problem is stored (see {@link Run.lost}), never a second run.
 */
export function teeStream(
  source: Readable,
  run: Run,
  status: number,
  headers: OutgoingHeaders,
  began: () => boolean,
): Readable {
  const out = new PassThrough();
  let ended = false;
  source.on('data', (chunk: unknown) => {
    run.body.add(chunk);
    if (!out.write(chunk)) source.pause();
  });
  out.on('drain', () => source.resume());
  out.once('close', () => {
    // The client went away: stop the source (its 'close' says the response is lost).
    if (!ended) source.destroy();
  });
  source.once('end', () => {
    ended = true;
    // Its client left as it ended: the body was collected whole all the same.
    if (out.destroyed) return void run.finish(status, headers);
    void run.finish(status, headers).then(() => out.end());
  });
  const failed = (error: Error) => {
    ended = true;
    // Asked before `out` is destroyed: no byte passes after, and the framework decides the same.
    void (began() ? run.lost(status) : run.abandon(errorLabel(error)));
    out.destroy(error);
  };
  source.once('error', failed);
  source.once('close', () => {
    if (ended) return;
    if (out.destroyed) void run.lost(status);
    // Destroyed without an error part way: nothing would end the response (it hung open).
    else failed(Object.assign(new Error('the stream closed before its end'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }));
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

/**
 * Keeps every chunk `stream` is handed from now on in `chunks` (when given), as its source
 * pushes it (before any decoder: the bytes as they came), without a stream in between or
 * reading it; `onEnd` is
 * called once its source has pushed the last chunk. False, and nothing done, when
 * that would miss bytes: some are buffered already, or the stream has ended or is not a plain
 * Readable; the caller then reads through a tee.
 */
export function watchPushes(
  stream: unknown,
  chunks: { push(chunk: Buffer): unknown } | undefined,
  onEnd?: () => void,
): boolean {
  if (!(stream instanceof Readable) || stream.push !== readablePush) return false;
  if (stream.readableLength > 0 || stream.readableEnded || stream.destroyed || stream.readableObjectMode) return false;
  // An IncomingMessage whose body has all come was either empty or consumed by someone else. An
  // HTTP/2 request says so only in its stream's state (its `complete` waits for the response):
  // its end pushed already, a watch would never see it, and the body was taken as never ended.
  if ((stream as { complete?: boolean }).complete === true) return false;
  if ((stream as { _readableState?: { ended?: boolean } })._readableState?.ended === true) return false;
  patchPush(stream, chunks, onEnd);
  return true;
}

/**
 * {@link watchPushes} for a Node request some of whose bytes came before anyone watched (a hook
 * that awaited let them in): those are read, kept first and put back in front, as they were, so
 * whoever reads the request later (a parser that reads the request itself, not the payload
 * handed to it: @fastify/multipart) reads every byte. `onEnd` is called at once if the body is
 * all here. False, and nothing done, for a stream someone reads or has read, or that is not a
 * Node request.
 */
export function watchBuffered(stream: unknown, chunks: { push(chunk: Buffer): unknown }, onEnd: () => void): boolean {
  if (!(stream instanceof IncomingMessage) || stream.push !== readablePush) return false;
  if (stream.readableFlowing === true || stream.readableEnded || stream.destroyed || stream.readableEncoding !== null)
    return false;
  // Read whole from the buffer (paused, no size: all of it); the 'end' a drained, complete
  // stream schedules is cancelled by the bytes put back. An empty one is not read: that read
  // emitted its 'end' at the next tick, before a parser that starts later (after an async hook
  // or scope) listened, and the request was never answered.
  const buffered = stream.readableLength > 0 ? (stream.read() as Buffer | null) : null;
  if (buffered !== null) {
    chunks.push(buffered);
    stream.unshift(buffered);
  }
  if (stream.complete) onEnd();
  else patchPush(stream, chunks, onEnd);
  return true;
}

/**
 * Readable's own `push`: a stream whose `push` is another (watched already, by this plugin
 * registered twice, or a class's own) is read through a tee. (`Object.hasOwn` cost a builtin call.)
 */
const readablePush = Readable.prototype.push;

function patchPush(stream: Readable, chunks: { push(chunk: Buffer): unknown } | undefined, onEnd?: () => void): void {
  const push = stream.push;
  stream.push = function watched(this: Readable, chunk: unknown, encoding?: BufferEncoding): boolean {
    if (chunks !== undefined && chunk !== null && chunk !== undefined) {
      chunks.push(typeof chunk === 'string' ? Buffer.from(chunk, encoding) : (chunk as Buffer));
    }
    const more = push.call(this, chunk, encoding);
    if (chunk === null) onEnd?.();
    return more;
  };
}

/**
 * Chunks kept in order. One (most bodies) is kept without an array: an array's first push gives
 * it room for 17, about 150 bytes a request.
 */
export class Chunks {
  #first: Buffer | undefined;
  #rest: Buffer[] | undefined;
  #size = 0;

  /** Their bytes, all told. */
  get size(): number {
    return this.#size;
  }

  push(chunk: Buffer): void {
    this.#size += chunk.length;
    if (this.#first === undefined) this.#first = chunk;
    else (this.#rest ??= []).push(chunk);
  }

  /** All of them as one Buffer (a single chunk as it is, not copied); undefined for none. */
  concat(): Buffer | undefined {
    const first = this.#first;
    const rest = this.#rest;
    return first === undefined || rest === undefined ? first : Buffer.concat([first, ...rest], this.#size);
  }
}
