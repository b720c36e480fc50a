import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { expect } from 'vitest';
import { problemTypes } from '../../src/http/index.js';

/** A promise the test opens. */
export function gate(): { open: () => void; opened: Promise<void> } {
  let open: () => void = () => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { open, opened };
}

/**
 * Sends `request` (raw HTTP/1.1) on a socket of its own, and closes the socket once `when`
 * resolves (and, given `seen`, once the client has read it, for up to 5 s: on a loaded machine
 * bytes written take longer than any fixed pause to arrive): a client that leaves while the
 * handler runs. Resolves once the socket is closed, and returns what the client had read by then.
 */
export async function leaveWhile(
  port: number,
  request: string,
  when: Promise<unknown>,
  seen?: string,
): Promise<string> {
  const socket = connect(port, '127.0.0.1');
  let read = '';
  socket.on('data', (chunk: Buffer) => {
    read += chunk.toString('latin1');
  });
  await once(socket, 'connect');
  socket.write(request);
  await when;
  for (const until = Date.now() + 5_000; seen !== undefined && !read.includes(seen) && Date.now() < until; ) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const closed = once(socket, 'close');
  socket.destroy();
  await closed;
  return read;
}

/** A keyed POST with a 2-byte body, as raw HTTP/1.1. */
export function keyedPost(path: string, key = 'k'): string {
  return `POST ${path} HTTP/1.1\r\nHost: x\r\nIdempotency-Key: ${key}\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi`;
}

/**
 * What {@link keyedPost} sends, over fetch: its status, `Idempotent-Replayed`, content type and
 * body. Bounded: a request that hangs fails the test.
 */
export async function sendKeyed(url: string, key = 'k') {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'idempotency-key': key, 'content-type': 'text/plain' },
    body: 'hi',
    signal: AbortSignal.timeout(3_000),
  });
  return {
    status: response.status,
    replayed: response.headers.get('idempotent-replayed'),
    type: response.headers.get('content-type'),
    body: await response.text(),
  };
}

/** Resolves after `ms`. */
export const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Sends {@link sendKeyed} to `path` on `port`, and again every 20 ms while the key is in
 * progress (409; at most 150 more): what the retry finally gets, and how many 409s came first.
 */
export async function settledRetry(port: number, key = 'k', path = '/orders') {
  const url = `http://127.0.0.1:${port}${path}`;
  let answer = await sendKeyed(url, key);
  let conflicts = 0;
  for (; conflicts < 150 && answer.status === 409; conflicts++) {
    await tick(20);
    answer = await sendKeyed(url, key);
  }
  return { ...answer, conflicts };
}

/** A raw TCP client of `port` (for pipelining): its socket, and everything read so far as latin1. */
export async function rawClient(port: number): Promise<{ socket: Socket; read: () => string }> {
  const socket = connect(port, '127.0.0.1');
  let read = '';
  socket.on('data', (chunk: Buffer) => {
    read += chunk.toString('latin1');
  });
  socket.on('error', () => {});
  await once(socket, 'connect');
  return { socket, read: () => read };
}

/** Expects the response-lost problem, as a replay. */
export function expectLost(answer: Awaited<ReturnType<typeof sendKeyed>>): void {
  expect({ status: answer.status, replayed: answer.replayed, type: answer.type }).toEqual({
    status: 500,
    replayed: 'true',
    type: 'application/problem+json',
  });
  expect(JSON.parse(answer.body)).toMatchObject({ type: problemTypes.responseLost, status: 500 });
}

/**
 * Pipelines keyed POSTs `a` and `b` to `/orders` on one socket; once `running` resolves, the
 * client leaves; then `release()`. What retries of a and b finally get ({@link settledRetry}).
 */
export async function pipelinedAndLeft(port: number, running: Promise<unknown>, release: () => void) {
  const { socket } = await rawClient(port);
  socket.write(keyedPost('/orders', 'a') + keyedPost('/orders', 'b'));
  await running;
  socket.destroy();
  await tick(50);
  release();
  return [await settledRetry(port, 'a'), await settledRetry(port, 'b')] as const;
}
