import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { defaultSecretParams, hideSecrets, Redactor } from '../src/index.js';

/** A secret: distinctive enough that finding it in the output means it leaked. */
const secret = fc.stringMatching(/^[A-Za-z0-9]{6,10}$/).map((s) => `S3CR${s}`);
/** Characters a careless user leaves unencoded in a password. */
const passwordOf = fc
  .tuple(secret, fc.constantFrom('', '/', '@', '#', '?', ':', '%', ' ', '/x@', '&'), secret)
  .map(([a, odd, b]) => `${a}${odd}${b}`);
const host = fc.constantFrom('api.example.com', '127.0.0.1', 'localhost', '[::1]', 'exa mple.com', 'a_b.example');
const port = fc.constantFrom('', ':8080', ':99999', ':x', ':');
const path = fc.constantFrom('', '/', '/v1/items', '/a b', '/@scope/pkg');
const scheme = fc.constantFrom('https', 'http', 'HTTPS', 'Http');
const secretParam = fc.constantFrom(...defaultSecretParams, ...defaultSecretParams.map((p) => p.toUpperCase()));

/** Every form in which a secret could show: as given, and percent-encoded. */
function forms(value: string): string[] {
  return [...new Set([value, encodeURIComponent(value), encodeURI(value)])];
}

function expectHidden(shown: string, secrets: readonly string[]): void {
  for (const s of secrets)
    for (const part of s.split(/[^A-Za-z0-9]+/).filter((p) => p.length >= 6)) {
      expect(shown, `${part} leaked in ${shown}`).not.toContain(part);
    }
  for (const s of secrets) for (const f of forms(s)) expect(shown).not.toContain(f);
}

describe('Redactor properties', () => {
  const redactor = new Redactor();

  it('url(): any URL, valid or not, with credentials and secret parameters shows none of them', () => {
    fc.assert(
      fc.property(
        scheme,
        fc.option(fc.stringMatching(/^[a-z]{1,8}$/), { nil: undefined }),
        passwordOf,
        host,
        port,
        path,
        secretParam,
        secret,
        (sch, user, password, h, p, pa, param, value) => {
          const userinfo = user === undefined ? `:${password}@` : `${user}:${password}@`;
          const url = `${sch}://${userinfo}${h}${p}${pa}?q=1&${param}=${value}`;
          expectHidden(redactor.url(url), [password, value]);
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it('url() and text(): a password that opens with digits and a `#`, `?` or `/` (read as a port by the URL parser) is hidden', () => {
    fc.assert(
      fc.property(
        scheme,
        fc.option(fc.stringMatching(/^[a-z]{1,8}$/), { nil: undefined }),
        fc.constantFrom('', '1', '8080', '65535'),
        fc.constantFrom('#', '?', '/', '#/', '?#'),
        secret,
        host,
        port,
        path,
        (sch, user, digits, odd, rest, h, p, pa) => {
          const password = `${digits}${odd}${rest}`;
          const url = `${sch}://${user ?? ''}:${password}@${h}${p}${pa}`;
          expectHidden(redactor.url(url), [password]);
          expectHidden(redactor.text(`connect failed: ${url} (refused)`), [password]);
          expectHidden(hideSecrets(url), [password]);
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it("url(): a secret parameter in the fragment (OAuth's #access_token=) is hidden, the rest of the URL kept", () => {
    fc.assert(
      fc.property(scheme, host, path, fc.boolean(), secretParam, secret, (sch, h, pa, query, param, value) => {
        const url = `${sch}://${h}${pa}${query ? '?page=2' : ''}#state=xyz&${param}=${value}&expires_in=3600`;
        const shown = redactor.url(url);
        expectHidden(shown, [value]);
        expect(shown).toContain('state=xyz');
        expect(shown).toContain('expires_in=3600');
      }),
      { numRuns: 500 },
    );
  });

  it('url() and hideSecrets(): a URL without credentials or secret parameters comes back as given, not as URL writes it', () => {
    // Found by the dashboard's property test: a policy named `A:?` was shown as `a:?`.
    const word = fc.stringMatching(/^[A-Za-z][A-Za-z0-9]{0,5}$/);
    const plain = fc
      .tuple(
        word,
        fc.constantFrom(':', '://'),
        fc.constantFrom('', 'Host.Example', 'EXA.mple:80', '127.0.0.1:443', '[::1]'),
        fc.constantFrom('', '/', '/A/./b', '/x/../Y', '/a%7eb'),
        fc.constantFrom('', '?', '?q=1', '?Page=2&x', '#', '#Frag'),
      )
      .map((parts) => parts.join(''));
    fc.assert(
      fc.property(plain, (text) => {
        expect(redactor.url(text)).toBe(text);
        expect(hideSecrets(text)).toBe(text);
      }),
      { numRuns: 500 },
    );
    expect(hideSecrets('A:?')).toBe('A:?');
  });

  it('text(): a message holding such a URL shows none of its secrets', () => {
    fc.assert(
      // In free text a space ends a URL: a password holding one cannot be told from the words after it.
      fc.property(
        scheme,
        passwordOf.filter((p) => !p.includes(' ')),
        host,
        secretParam,
        secret,
        (sch, password, h, param, value) => {
          const message = `connect ECONNREFUSED while fetching ${sch}://u:${password}@${h}/x?${param}=${value} (retrying)`;
          expectHidden(redactor.text(message), [password, value]);
        },
      ),
      { numRuns: 1_000 },
    );
  });

  it('hideSecrets(): text that starts with a URL hides the secrets of every URL in it, not the first only', () => {
    fc.assert(
      // A warning that names a policy by its URL, then tells what a callback threw: parsed whole as
      // one URL, the rest of the text was its path (spaces as %20), and a second URL's password showed.
      fc.property(
        scheme,
        passwordOf,
        host,
        passwordOf.filter((p) => !p.includes(' ')),
        secretParam,
        secret,
        (sch, first, h, second, param, value) => {
          const text = `${sch}://u:${first}@${h}/v1: isFailure threw: cannot reach redis://v:${second}@cache:6379/0?${param}=${value} (retrying)`;
          const shown = hideSecrets(text);
          expectHidden(shown, [first, second, value]);
        },
      ),
      { numRuns: 1_000 },
    );
    expect(hideSecrets('https://a:S3CRET1@h.example/v1: isFailure threw: cannot reach redis://b:S3CRET2@cache/0')).toBe(
      'https://***@h.example/v1: isFailure threw: cannot reach redis://***@cache/0',
    );
  });

  it('regressions: an invalid URL hid its password only, and text() saw lower-case http(s) only', () => {
    // A port out of range makes the URL invalid: its token showed in "Invalid URL: ..." messages.
    expect(redactor.url('https://api.example.com:99999/v1?token=S3CRET&q=1')).toBe(
      'https://api.example.com:99999/v1?token=***&q=1',
    );
    // An unencoded `/` in the password: the parser reads a bad port, the old fallback stopped at the `/`.
    expect(redactor.url('https://user:pa/ssword@api.example.com/v1')).toBe('https://***@api.example.com/v1');
    expect(redactor.text('fetch failed: HTTPS://user:S3CRET@api.example.com/x')).toBe(
      'fetch failed: https://***@api.example.com/x',
    );
    expect(redactor.text('lost redis://default:S3CRET@10.0.0.1:6379/0')).toBe('lost redis://***@10.0.0.1:6379/0');
    // Extra parameter names are taken as names, not as patterns.
    expect(new Redactor(['x.sig']).url('https://h:99999/p?x.sig=S3CRET&xasig=shown')).toBe(
      'https://h:99999/p?x.sig=***&xasig=shown',
    );
  });

  it('hides the query credentials of OAuth, GitLab, Firebase and signed S3/GCS URLs, not only the plain names', () => {
    const url =
      'https://api.example.com/v1?client_secret=S3CRcs1234&refresh_token=S3CRrt1234&id_token=S3CRit1234' +
      '&private_token=S3CRpt1234&auth=S3CRau1234&jwt=S3CRjw1234&passwd=S3CRpw1234' +
      '&X-Amz-Signature=S3CRas1234&X-Amz-Security-Token=S3CRat1234&X-Goog-Signature=S3CRgs1234&page=2';
    const shown = redactor.url(url);
    expect(shown).not.toMatch(/S3CR/);
    expect(shown).toContain('page=2');
    expect(redactor.text(`failed over to ${url.replace('https://', 'https//')} now`)).not.toMatch(/S3CR/);
  });
});
