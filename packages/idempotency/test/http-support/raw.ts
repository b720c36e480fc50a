import { connect } from 'node:net';

// Raw HTTP/1.1 over a socket, for tests that need the wire as a client really writes it
// (split writes, pipelining, Expect, resets): fetch() cannot.

/** Resolves to `value`, or to 'timeout' after `ms`: a hung request must not hang the suite. */
export function within<T>(ms: number, value: Promise<T>): Promise<T | 'timeout'> {
  return Promise.race([value, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), ms).unref())]);
}

export interface RawResponse {
  status: number;
  headers: string;
  body: string;
}

/**
 * Writes `data` (all of it, in the given writes, `gap` ms apart) to a fresh socket and parses every
 * HTTP/1.1 response that comes back (Content-Length or chunked), until `count` final responses
 * came, the socket closed, or `ms` passed. 1xx responses are kept too.
 */
export function exchange(
  port: number,
  writes: (string | Buffer)[],
  options: { count: number; ms?: number; gap?: number; closeAfterWrites?: boolean },
): Promise<RawResponse[]> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let buf: Buffer = Buffer.alloc(0);
    const out: RawResponse[] = [];
    let finals = 0;
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(out);
    };
    const timer = setTimeout(finish, options.ms ?? 3000);
    const parse = () => {
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        const status = Number(head.slice(9, 12));
        if (status >= 100 && status < 200) {
          out.push({ status, headers: head, body: '' });
          buf = buf.subarray(end + 4);
          continue;
        }
        const cl = /\r\ncontent-length: *(\d+)/i.exec(head);
        let body: string;
        let rest: Buffer;
        if (cl) {
          const n = Number(cl[1]);
          if (buf.length - end - 4 < n) return;
          body = buf.subarray(end + 4, end + 4 + n).toString('utf8');
          rest = buf.subarray(end + 4 + n);
        } else if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
          let at = end + 4;
          const parts: Buffer[] = [];
          for (;;) {
            const line = buf.indexOf('\r\n', at);
            if (line < 0) return;
            const size = Number.parseInt(buf.subarray(at, line).toString('latin1'), 16);
            if (buf.length < line + 2 + size + 2) return;
            if (size === 0) {
              at = line + 4;
              break;
            }
            parts.push(buf.subarray(line + 2, line + 2 + size));
            at = line + 2 + size + 2;
          }
          body = Buffer.concat(parts).toString('utf8');
          rest = buf.subarray(at);
        } else {
          body = '';
          rest = buf.subarray(end + 4);
        }
        out.push({ status, headers: head, body });
        buf = rest;
        if (++finals >= options.count) return finish();
      }
    };
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      parse();
    });
    socket.on('close', finish);
    socket.on('error', finish);
    let i = 0;
    const next = () => {
      if (settled) return;
      if (i >= writes.length) {
        if (options.closeAfterWrites) socket.end();
        return;
      }
      socket.write(writes[i++] as string | Buffer);
      setTimeout(next, options.gap ?? 0);
    };
    socket.once('connect', next);
  });
}

/** The head of a POST with a Content-Length body. */
export function head(path: string, headers: string[], length: number): string {
  return [`POST ${path} HTTP/1.1`, 'Host: localhost', ...headers, `Content-Length: ${length}`, '', ''].join('\r\n');
}

export const finals = (responses: RawResponse[]) => responses.filter((r) => r.status >= 200);

export const json = (value: unknown) => Buffer.from(JSON.stringify(value));
export const keyed = (key: string) => ['Content-Type: application/json', `Idempotency-Key: ${key}`];
