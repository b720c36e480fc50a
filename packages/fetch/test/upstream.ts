import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, createServer as createNetServer, type Socket } from 'node:net';
import { createBus } from '@holdfast/core';
import { afterEach } from 'vitest';
import { type ResilientFetch, type ResilientFetchOptions, resilientFetch } from '../src/index.js';

export interface Seen {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
}

export type Handler = (req: Seen, res: ServerResponse, n: number) => void;

/** A real HTTP server on 127.0.0.1, port 0, that records what it was sent. */
export interface Upstream {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly seen: Seen[];
  /** Requests being answered now, and the most at once so far. */
  readonly inFlight: number;
  readonly maxInFlight: number;
  /** Connections accepted. */
  readonly connections: number;
  handle(handler: Handler): void;
  close(): Promise<void>;
}

export async function upstream(handler: Handler = (_, res) => res.end('ok')): Promise<Upstream> {
  let current = handler;
  const seen: Seen[] = [];
  const counts = { inFlight: 0, maxInFlight: 0, connections: 0 };
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    counts.inFlight++;
    counts.maxInFlight = Math.max(counts.maxInFlight, counts.inFlight);
    res.on('close', () => counts.inFlight--);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const entry = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
      };
      seen.push(entry);
      current(entry, res, seen.length);
    });
  });
  server.on('connection', (socket) => {
    counts.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    port,
    seen,
    get inFlight() {
      return counts.inFlight;
    },
    get maxInFlight() {
      return counts.maxInFlight;
    },
    get connections() {
      return counts.connections;
    },
    handle(next) {
      current = next;
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Replies with `status`, optional headers and a body. */
export function reply(status: number, headers: Record<string, string> = {}, body = `status ${status}`): Handler {
  return (_, res) => {
    res.writeHead(status, headers);
    res.end(body);
  };
}

/** Replies from a list, one entry per request; the last one repeats. */
export function sequence(...handlers: Handler[]): Handler {
  return (req, res, n) => (handlers[Math.min(n, handlers.length) - 1] as Handler)(req, res, n);
}

/**
 * The servers and clients of a test file, closed and disposed after each test. Clients get a bus
 * of their own and `defaults` under the test's options; `made` lists this test's clients.
 */
export function perTest(defaults: ResilientFetchOptions = {}): {
  server(handler: Handler): Promise<Upstream>;
  client(options: ResilientFetchOptions): ResilientFetch;
  readonly made: readonly ResilientFetch[];
} {
  const open: Upstream[] = [];
  const made: ResilientFetch[] = [];
  afterEach(async () => {
    for (const http of made.splice(0)) http.dispose();
    await Promise.all(open.splice(0).map((s) => s.close()));
  });
  return {
    async server(handler) {
      const s = await upstream(handler);
      open.push(s);
      return s;
    },
    client(options) {
      const http = resilientFetch({ bus: createBus(), ...defaults, ...options });
      made.push(http);
      return http;
    },
    made,
  };
}

/** A loopback port with nothing listening: connections to it are refused. */
export async function closedPort(): Promise<string> {
  const s = createNetServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}
