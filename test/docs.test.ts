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
    const documented = [...read('errors.md').matchAll(/^\| `(E_[A-Z_]+)` \|/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual([...errorCodes].sort());
  });
});
