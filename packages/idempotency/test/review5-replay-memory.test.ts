import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

describe('review5: memoryStore, a short body kept as a string', () => {
  it('keeps no second copy of it once replayed: 20,000 records replayed once grow by under 32 bytes a record', () => {
    const fixture = new URL('./fixtures/replay-heap.ts', import.meta.url).pathname;
    const child = spawnSync(
      process.execPath,
      ['--expose-gc', '--conditions=@holdfast/source', '--import', 'tsx', fixture, '20000'],
      { encoding: 'utf8', timeout: 60_000, cwd: new URL('..', import.meta.url).pathname },
    );
    expect(child.status, child.stderr).toBe(0);
    const out = JSON.parse(child.stdout) as { perRecord: number; records: number };
    expect(out.records).toBe(20_000);
    // Measured: 3 B a record with this change; 415-425 B without it (the answer to its replays,
    // cached per record, with a Buffer of the body).
    expect(out.perRecord).toBeLessThan(32);
  }, 90_000);
});
