import { failover } from '@holdfast/failover';
import { pgRoles } from '@holdfast/failover/pg';
import type pg from 'pg';

/** The shortest path: writes to the primary; reads from the primary, or the replica when the primary is gone. */
export function simpleDb(primary: pg.Pool, replica: pg.Pool) {
  return failover({
    endpoints: [
      { name: 'primary', target: primary },
      { name: 'replica', target: replica },
    ],
    roles: pgRoles({ reads: 'primary' }),
  });
}
