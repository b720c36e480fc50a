/**
 * Property: whatever a policy is named (quotes, backslashes, newlines, braces, any unicode), the
 * text Prometheus scrapes, as the bytes it receives (UTF-8), parses with a strict reader of the
 * text format, holds one series per name, and reads each name back exactly. (Names holding a lone
 * surrogate are left out: UTF-8 cannot carry one, and two such names collide; see the report.)
 */
import { createBus, createPolicyRegistry } from '@holdfast/core';
import fc from 'fast-check';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { collect } from '../src/index.js';

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

const hostileChar = fc.constantFrom('"', '\\', '\n', '\r', '{', '}', ',', '=', ' ', '#', '\u2028', '\u0000', 'é', '😀');
const nameArb = fc
  .array(fc.oneof(fc.string({ maxLength: 3 }), hostileChar, fc.string({ unit: 'binary', maxLength: 2 })), {
    minLength: 1,
    maxLength: 6,
  })
  .map((parts) => parts.join(''))
  .filter((n) => n.length > 0 && n.length <= 200 && !/\p{Surrogate}/u.test(n));

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
          names.forEach((source, i) => {
            expect(counts.get(source)).toBe(i + 1);
          });
        } finally {
          stop();
        }
      }),
      { numRuns: 200 },
    );
  });
});
