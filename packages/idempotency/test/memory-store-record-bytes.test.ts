import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

describe('memoryStore, the bytes a completed record retains', () => {
  it("keeps a short JSON response's record in one object with its strings: under 480 bytes a record", () => {
    const fixture = new URL('./fixtures/record-heap.ts', import.meta.url).pathname;
    const child = spawnSync(
      process.execPath,
      ['--expose-gc', '--conditions=@holdfast/source', '--import', 'tsx', fixture, '20000'],
      { encoding: 'utf8', timeout: 60_000, cwd: new URL('..', import.meta.url).pathname },
    );
    expect(child.status, child.stderr).toBe(0);
    const out = JSON.parse(child.stdout) as { perRecord: number; records: number };
    expect(out.records).toBe(40_000);
    // Measured: 443-453 B a record with its outcome folded into it, a number for its token and
    // the headers object shared; 549-551 B before (an outcome object, a token string, a headers
    // object per record). Each record is collected and copied by the young generation's collections it survives, and
    // the old generation's: its bytes and objects are a first request's main cost past the hash.
    expect(out.perRecord).toBeLessThan(480);
  }, 90_000);
});
