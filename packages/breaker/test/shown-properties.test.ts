import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { shownKey } from '../src/shown.js';

const secret = fc.stringMatching(/^[A-Za-z0-9]{6,10}$/).map((s) => `S3CR${s}`);
const passwordOf = fc
  .tuple(secret, fc.constantFrom('', '/', '@', '#', '?', ':', '%', '/x@', '&', '=', ';'), secret)
  .map(([a, odd, b]) => `${a}${odd}${b}`);
const scheme = fc.constantFrom(
  'https',
  'http',
  'HTTPS',
  'redis',
  'rediss',
  'postgres',
  'postgresql',
  'amqp',
  'mongodb+srv',
);
const host = fc.constantFrom('api.example.com', '127.0.0.1', 'db-1.internal:5432', '[::1]:6379', 'exa mple.com');
const path = fc.constantFrom('', '/', '/0', '/v1/items', '/@scope/pkg');
const param = fc.constantFrom('token', 'api_key', 'password', 'sig', 'SECRET', 'Key');

function expectHidden(shown: string, secrets: readonly string[]): void {
  for (const s of secrets) {
    for (const part of s.split(/[^A-Za-z0-9]+/).filter((p) => p.length >= 6)) {
      expect(shown, `${part} leaked in ${shown}`).not.toContain(part);
    }
  }
}

describe('shownKey() properties: a breaker key shows no credential', () => {
  it('a URL key, valid or not, with user info and a secret parameter', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('', 'tenant-1 ', 'GET '),
        scheme,
        fc.option(fc.stringMatching(/^[a-z]{1,8}$/), { nil: '' }),
        passwordOf,
        host,
        path,
        param,
        secret,
        (prefix, sch, user, password, h, p, name, value) => {
          const key = `${prefix}${sch}://${user}:${password}@${h}${p}?a=1&${name}=${value}`;
          expectHidden(shownKey(key), [password, value]);
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it('two URLs in one key (a primary and its replica): neither shows its password', () => {
    fc.assert(
      fc.property(scheme, passwordOf, passwordOf, host, (sch, a, b, h) => {
        const key = `${sch}://u:${a}@${h}/0,${sch}://u:${b}@${h}/1`;
        expectHidden(shownKey(key), [a, b]);
      }),
      { numRuns: 1_000 },
    );
  });

  it('a connection string: its password= value, in any case and quoting', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('password', 'PASSWORD', 'Pwd', 'passwd', 'pass'),
        fc.constantFrom('=', ' = ', '= '),
        secret,
        fc.constantFrom(
          (v: string) => v,
          (v: string) => `'${v}'`,
          (v: string) => `"${v}"`,
          (v: string) => `'${v} x'`,
        ),
        fc.constantFrom(' ', ';', ','),
        (kw, eq, value, quote, sep) => {
          const key = `host=db${sep}user=app${sep}${kw}${eq}${quote(value)}${sep}dbname=x`;
          expectHidden(shownKey(key), [value]);
        },
      ),
      { numRuns: 1_000 },
    );
  });

  it('regression: a web URL whose password holds an unencoded #, ? or / showed that password', () => {
    // Its authority was cut at the first `/?#`, before the `@`: nothing was taken for user info.
    expect(shownKey('https://app:S3CR#ET@api.example.com/v1')).toBe('https://***@api.example.com/v1');
    expect(shownKey('https://app:S3CR?ET@api.example.com/v1')).toBe('https://***@api.example.com/v1');
    expect(shownKey('https://app:S3CR/ET@api.example.com/v1')).toBe('https://***@api.example.com/v1');
    // A valid web URL's path keeps its `@`.
    expect(shownKey('https://registry.npmjs.org/@scope/pkg')).toBe('https://registry.npmjs.org/@scope/pkg');
  });
});
