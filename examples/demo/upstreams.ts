import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** What an upstream does to a request right now. */
export type Behaviour =
  | { readonly kind: 'ok' }
  | { readonly kind: 'slow'; readonly ms: number }
  | { readonly kind: 'error'; readonly status: number };

/** One scripted change: from `at` ms after start, the upstream behaves like this, or is down. */
export type Step = { readonly at: number } & (Behaviour | { readonly kind: 'down' } | { readonly kind: 'up' });

export type Route = (req: IncomingMessage, body: string, res: ServerResponse) => void;

/**
 * A local HTTP server that misbehaves on a script: latency spikes, bursts of errors, and going
 * down (its port closed, its connections cut) and coming back on the same port.
 */
export class Upstream {
  readonly name: string;
  readonly #route: Route;
  readonly #sockets = new Set<Socket>();
  #server: Server | undefined;
  #port = 0;
  #behaviour: Behaviour = { kind: 'ok' };
  requests = 0;

  constructor(name: string, route: Route) {
    this.name = name;
    this.#route = route;
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  get state(): string {
    if (!this.#server) return 'down';
    return this.#behaviour.kind === 'slow'
      ? `slow ${this.#behaviour.ms}ms`
      : this.#behaviour.kind === 'error'
        ? `${this.#behaviour.status}s`
        : 'ok';
  }

  async start(): Promise<void> {
    const server = createServer((req, res) => this.#handle(req, res));
    server.keepAliveTimeout = 1_000;
    server.on('connection', (socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#port, '127.0.0.1', () => resolve());
    });
    this.#port = (server.address() as AddressInfo).port;
    this.#server = server;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (!server) return;
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Does one step of the script now: behaves differently from here on, goes down, or comes back up. */
  async apply(step: Step): Promise<void> {
    if (step.kind === 'down') await this.stop();
    else if (step.kind === 'up') await this.start();
    else this.#behaviour = step;
  }

  async dispose(): Promise<void> {
    await this.stop();
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    this.requests++;
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      body += chunk;
    });
    req.on('end', () => {
      const b = this.#behaviour;
      if (b.kind === 'error') {
        res.writeHead(b.status, { 'content-type': 'text/plain', 'retry-after': '0' }).end(`${this.name} is failing`);
      } else if (b.kind === 'slow') {
        const t = setTimeout(() => this.#route(req, body, res), b.ms);
        res.once('close', () => clearTimeout(t));
      } else {
        this.#route(req, body, res);
      }
    });
  }
}
