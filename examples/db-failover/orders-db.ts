import { failover } from '@holdfast/failover';
import { pgRoles } from '@holdfast/failover/pg';
import pg from 'pg';

/** Where the two PostgreSQL servers are: connection strings or pg options. */
export interface OrdersDbConfig {
  readonly servers: readonly { readonly name: string; readonly connection: pg.PoolConfig }[];
}

function pool(name: string, connection: pg.PoolConfig): pg.Pool {
  const p = new pg.Pool({ max: 10, connectionTimeoutMillis: 2_000, ...connection });
  // Without an 'error' listener, a connection lost while idle (the server died) crashes the process.
  p.on('error', (error) => console.warn(`${name}: idle connection lost: ${error.message}`));
  return p;
}

/**
 * One set over every server: which one is primary is asked, not configured. Writes go to the
 * primary with the highest timeline (a stale primary that comes back is fenced); reads go to
 * replicas, and to the primary when no replica is left.
 */
export function ordersDb(config: OrdersDbConfig) {
  const db = failover({
    name: 'orders-db',
    endpoints: config.servers.map((s) => ({ name: s.name, target: pool(s.name, s.connection) })),
    roles: pgRoles({ interval: 1_000, timeout: 1_000 }), // a promotion is seen within about 2 s
    timeout: 5_000, // per try: a frozen server is left after 5 s
    retry: { idempotent: true }, // applies to reads only: a write has one place to go
  });
  return {
    db,
    /** Creates the orders table on the primary if it is not there (replicas get it by replication). */
    createSchema: () =>
      db.execute((e) =>
        e.target.query(
          'create table if not exists orders (id text primary key, total int, at timestamptz not null default now())',
        ),
      ),
    /** A write: to the primary, or NoPrimaryError (E_NO_PRIMARY) at once when none is known. */
    placeOrder: (id: string, totalCents: number) =>
      db.execute((e) => e.target.query('insert into orders (id, total) values ($1, $2)', [id, totalCents])),
    /** A read: a replica, or the primary. */
    countOrders: async () => {
      const { rows } = await db.execute((e) => e.target.query<{ n: number }>('select count(*)::int as n from orders'), {
        intent: 'read',
      });
      return rows[0]?.n ?? 0;
    },
    /** Stop the role checks, then close each pool once (the set never closes them). */
    close: async () => {
      db.dispose();
      await Promise.all(db.endpoints.map((e) => e.target.end()));
    },
  };
}
