/**
 * Property: whatever a policy is named (quotes, backslashes, newlines, braces, any unicode), the
 * text Prometheus scrapes, as the bytes it receives (UTF-8), parses with a strict reader of the
 * text format, holds one series per name, and reads each name back exactly. A name holding a lone
 * UTF-16 surrogate (which UTF-8 cannot carry) reads back with the surrogate spelled `\ud800`, and
 * still as a series of its own.
 */
import { createBus, createPolicyRegistry, ShownNames } from '@holdfast/core';
import fc from 'fast-check';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { collect } from '../src/index.js';
import { wireLabel } from '../src/wire.js';

interface Sample {
  readonly metric: string;
  readonly labels: ReadonlyMap<string, string>;
  readonly value: number;
}

/** A strict reader of one sample line: `name{label="value",...} number`, escapes \\ \" \n only. */
function parseLine(line: string): Sample {
  const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
  if (name === null) throw new Error(`no metric name: ${JSON.stringify(line)}`);
  let i = name[0].length;
  const labels = new Map<string, string>();
  if (line[i] === '{') {
    i++;
    while (line[i] !== '}') {
      const label = /^[a-zA-Z_][a-zA-Z0-9_]*="/.exec(line.slice(i));
      if (label === null) throw new Error(`bad label at ${i}: ${JSON.stringify(line)}`);
      i += label[0].length;
      let value = '';
      for (;;) {
        const c = line[i++];
        if (c === undefined) throw new Error(`unterminated label value: ${JSON.stringify(line)}`);
        if (c === '"') break;
        if (c === '\\') {
          const e = line[i++];
          if (e === 'n') value += '\n';
          else if (e === '\\' || e === '"') value += e;
          else throw new Error(`bad escape \\${e}: ${JSON.stringify(line)}`);
        } else value += c;
      }
      const key = label[0].slice(0, -2);
      if (labels.has(key)) throw new Error(`label ${key} twice: ${JSON.stringify(line)}`);
      labels.set(key, value);
      if (line[i] === ',') i++;
      else if (line[i] !== '}') throw new Error(`expected , or } at ${i}: ${JSON.stringify(line)}`);
    }
    i++;
  }
  const rest = /^ (-?(?:[0-9.]+(?:e[+-]?[0-9]+)?|Inf|NaN|\+Inf))( -?[0-9]+)?$/.exec(line.slice(i));
  if (rest === null) throw new Error(`bad value: ${JSON.stringify(line)}`);
  return { metric: name[0], labels, value: Number(rest[1]?.replace('+Inf', 'Infinity').replace('Inf', 'Infinity')) };
}

/** Every sample of a scrape, as Prometheus receives it: UTF-8 bytes, decoded. */
function scrape(text: string): Sample[] {
  const wire = Buffer.from(text, 'utf8').toString('utf8');
  return wire
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map(parseLine);
}

const hostileChar = fc.constantFrom(
  '"',
  '\\',
  '\n',
  '\r',
  '{',
  '}',
  ',',
  '=',
  ' ',
  '#',
  '\u2028',
  '\u0000',
  'é',
  '😀',
  '\uD800',
  '\uDBFF',
  '\uDC00',
  '\uDFFF',
  '\uFFFD',
  '\\ud800',
  'u',
  'dc00',
);
const nameArb = fc
  .array(fc.oneof(fc.string({ maxLength: 3 }), hostileChar, fc.string({ unit: 'binary', maxLength: 2 })), {
    minLength: 1,
    maxLength: 6,
  })
  .map((parts) => parts.join(''))
  .filter((n) => n.length > 0 && n.length <= 200);
/**
 * What each name reads back as, in the order first seen: itself, unless it holds a lone surrogate
 * (see wireLabel) or what looks like a credential (`a:b@`: hidden, `#2` apart from one hidden alike).
 */
const readBack = (names: readonly string[]) => {
  const shown = new ShownNames();
  return names.map((name) => wireLabel(shown.get(name)));
};

describe('prometheus exposition properties', () => {
  it('any policy names: every line parses, one series per name, each name read back as sent', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(nameArb, { minLength: 1, maxLength: 8 }), async (names) => {
        const bus = createBus();
        const registry = new Registry();
        const stop = collect({ bus, registry, policies: createPolicyRegistry() });
        try {
          names.forEach((source, i) => {
            for (let n = 0; n <= i; n++) {
              bus.emit({ type: 'timeout', source, time: 0, timeout: 100, strategy: 'cooperative' });
            }
          });
          const samples = scrape(await registry.metrics());
          const seen = new Set<string>();
          for (const s of samples) {
            const id = `${s.metric}${JSON.stringify([...s.labels].sort())}`;
            expect(seen.has(id), `duplicate series ${id}`).toBe(false);
            seen.add(id);
          }
          const timeouts = samples.filter((s) => s.metric === 'holdfast_timeouts_total');
          const counts = new Map(timeouts.map((s) => [s.labels.get('policy'), s.value]));
          expect(counts.size).toBe(names.length);
          // Before: `!:@` read back as `***@` (hidden, as the exporter shows it), not as sent.
          readBack(names).forEach((label, i) => {
            expect(counts.get(label)).toBe(i + 1);
          });
        } finally {
          stop();
        }
      }),
      // A name that hides (a seed found it), and two that hide alike.
      { numRuns: 200, examples: [[['!:@', ' ']], [['a:b@x', 'a:c@x']]] },
    );
  });

  it('two names that differ only in a lone surrogate are two series on the wire', async () => {
    const bus = createBus();
    const registry = new Registry();
    const stop = collect({ bus, registry, policies: createPolicyRegistry() });
    try {
      for (const source of ['a\uD800', 'a\uDC00', 'a\uDC00', 'a\uFFFD', 'a\\ud800']) {
        bus.emit({ type: 'timeout', source, time: 0, timeout: 100, strategy: 'cooperative' });
      }
      const timeouts = scrape(await registry.metrics()).filter((s) => s.metric === 'holdfast_timeouts_total');
      expect(timeouts.map((s) => [s.labels.get('policy'), s.value])).toEqual([
        ['a\\ud800', 1],
        ['a\\udc00', 2],
        ['a\uFFFD', 1],
        ['a\\\\ud800', 1],
      ]);
    } finally {
      stop();
    }
  });

  const lone = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
  it('wireLabel: well-formed UTF-16 out, and no two strings give one label', () => {
    const unit = fc.constantFrom(
      '\\',
      'u',
      'd',
      'D',
      '8',
      'c',
      '0',
      'f',
      'a',
      '\uD800',
      '\uDBFF',
      '\uDC00',
      '\uDFFF',
      '😀',
    );
    fc.assert(
      fc.property(fc.array(unit, { maxLength: 12 }), fc.array(unit, { maxLength: 12 }), (a, b) => {
        const [x, y] = [a.join(''), b.join('')];
        const [wx, wy] = [wireLabel(x), wireLabel(y)];
        expect(Buffer.from(wx, 'utf8').toString('utf8')).toBe(wx);
        if (x !== y) expect(wx).not.toBe(wy);
        if (!lone.test(x) && !x.includes('\\')) expect(wx).toBe(x);
      }),
      { numRuns: 5_000 },
    );
  });
});
