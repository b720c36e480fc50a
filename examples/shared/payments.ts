import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A stand-in for a payments provider: `POST /charges` applies a charge once per Idempotency-Key,
 * as Stripe does. Several instances share one ledger, as replicas share a database.
 */
export interface Payments {
  readonly urls: string[];
  /** Charges applied, by key. */
  readonly ledger: Map<string, { amount: number; by: string }>;
  /** Stops one instance (by index), as a crash would. */
  kill(index: number): Promise<void>;
  close(): Promise<void>;
}

export async function startPayments(instances = 2): Promise<Payments> {
  const ledger = new Map<string, { amount: number; by: string }>();
  const servers: Server[] = [];
  for (let i = 0; i < instances; i++) {
    const name = `payments-${i + 1}`;
    const server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => {
        body += chunk;
      });
      req.on('end', () => {
        const key = req.headers['idempotency-key'];
        if (req.method !== 'POST' || req.url !== '/charges' || typeof key !== 'string') {
          res
            .writeHead(400, { 'content-type': 'application/json' })
            .end('{"error":"POST /charges with an Idempotency-Key"}');
          return;
        }
        const amount = Number((JSON.parse(body || '{}') as { amount?: unknown }).amount ?? 0);
        if (!ledger.has(key)) ledger.set(key, { amount, by: name });
        res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ id: key, ...ledger.get(key) }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    servers.push(server);
  }
  const close = (server: Server) =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return {
    urls: servers.map((s) => `http://127.0.0.1:${(s.address() as AddressInfo).port}`),
    ledger,
    kill: async (index) => {
      const server = servers[index];
      if (server?.listening) await close(server);
    },
    close: async () => {
      await Promise.all(servers.filter((s) => s.listening).map(close));
    },
  };
}
