import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { errorCodes, eventTypes } from '@holdfast/core';
import { describe, expect, it } from 'vitest';

const read = (file: string) => readFileSync(resolve(import.meta.dirname, '..', 'docs', file), 'utf8');

describe('the catalogues in docs/', () => {
  it('docs/events.md has a section for every event type, and for nothing else', () => {
    const documented = [...read('events.md').matchAll(/^### `([^`]+)`$/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual([...eventTypes].sort());
  });

  it('docs/errors.md has a row for every error code, and for nothing else', () => {
    // HoldfastError codes first; then the codes of the TypeErrors @holdfast/fetch refuses with.
    const [errors = '', refusals = ''] = read('errors.md').split(/^## Requests @holdfast\/fetch refuses$/m);
    const rows = (text: string) => [...text.matchAll(/^\| `(E_[A-Z_]+)` \|/gm)].map((m) => m[1]);
    expect(rows(errors).sort()).toEqual([...errorCodes].sort());
    const source = readFileSync(resolve(import.meta.dirname, '..', 'packages/fetch/src/resilient-fetch.ts'), 'utf8');
    const refusedWith = /function refusal\(code: ([^,]+),/.exec(source)?.[1] ?? '';
    expect(rows(refusals).sort()).toEqual([...refusedWith.matchAll(/'(E_[A-Z_]+)'/g)].map((m) => m[1]).sort());
  });
});
