import { describe, expect, it } from 'vitest';
import { BodyCollector } from '../src/http/capture.js';
import { Chunks } from '../src/http/stream.js';

describe('Chunks', () => {
  it('gives back every byte in order: none, one (the same Buffer, not a copy), several', () => {
    const none = new Chunks();
    expect(none.concat()).toBeUndefined();
    expect(none.size).toBe(0);

    const one = new Chunks();
    const only = Buffer.from('only');
    one.push(only);
    expect(one.concat()).toBe(only);

    const many = new Chunks();
    const parts = ['a', '', 'bc', 'def', '\u00ff\u0000'].map((s) => Buffer.from(s, 'latin1'));
    for (const part of parts) many.push(part);
    expect(many.size).toBe(8);
    expect(many.concat()?.equals(Buffer.concat(parts))).toBe(true);
  });
});

describe('BodyCollector', () => {
  it('keeps a body of any number of chunks up to its limit, and none past it', () => {
    const body = new BodyCollector(6);
    expect(body.bytes().length).toBe(0);
    body.add('ab');
    body.add(new Uint8Array([0x63]));
    body.add(Buffer.from('def'));
    expect(body.bytes().toString()).toBe('abcdef');
    expect(body.storable).toBe(true);
    body.add('g');
    expect(body.storable).toBe(false);
    expect(body.bytes().length).toBe(0);
  });
});
