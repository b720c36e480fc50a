import { expect, it } from 'vitest';
import { hideSecrets, Redactor } from '../src/redact.js';

/**
 * Review: hiding a secret parameter repeated many times (`?token=1&token=1…`, a hostile or
 * looping URL in an error message, a warning or a snapshot) took time quadratic in its count:
 * URLSearchParams.set() splices out each repeat (50,000 repeats: 7 s; 1 MB: minutes, the event
 * loop blocked). The bound is 100 times what a linear pass takes on a loaded machine.
 */
it('a secret parameter repeated 80,000 times costs 4 times what 20,000 do, not 16', { timeout: 120_000 }, () => {
  const r = new Redactor();
  const time = (n: number) => {
    const url = `https://api.example/v1?${'token=abc&'.repeat(n)}x=1`;
    let best = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 3; i++) {
      const start = performance.now();
      expect(r.url(url)).toBe('https://api.example/v1?token=***&x=1');
      best = Math.min(best, performance.now() - start);
    }
    return best;
  };
  expect(hideSecrets(`https://api.example/v1?${'token=abc&'.repeat(1000)} failed`)).not.toContain('abc');
  const small = time(20_000);
  const large = time(80_000);
  // A ratio, not a time: a loaded machine slows both alike (linear: 4, quadratic: 16).
  expect(large / Math.max(small, 1)).toBeLessThan(9);
});

it('repeats keep the first place, the others go, as before; names are case apart', () => {
  const r = new Redactor();
  expect(r.url('https://h/p?a=1&token=x&b=2&token=y&Token=z#f')).toBe('https://h/p?a=1&token=***&b=2&Token=***#f');
  expect(r.url('https://h/p?token=x')).toBe('https://h/p?token=***');
  expect(r.url('https://h/p?a=b%20c&token=x')).toBe('https://h/p?a=b+c&token=***');
});

it('URLs joined with no space (a list of nodes) each hide their credentials', () => {
  expect(hideSecrets('nodes: http://a:9200/,http://u:pw@b:9200/ down')).not.toContain('pw');
  expect(hideSecrets('http://a/x,http://u:pw@b/')).toBe('http://a/x,http://***@b/');
  expect(hideSecrets('see http://u:p@h/ahttp://u2:p2@h2/?token=t')).not.toMatch(/p2|u2|=t/);
  expect(hideSecrets('https://web.archive.org/web/2020/https://example.com/a')).toBe(
    'https://web.archive.org/web/2020/https://example.com/a',
  );
});

it('a megabyte of URLs joined with no space: every one hidden, no stack overflow', () => {
  const text = `see: ${'http://u:pw@h/,'.repeat(60_000)}x`;
  const shown = hideSecrets(text);
  expect(shown).not.toContain('pw');
  expect(shown.length).toBeGreaterThan(60_000 * 10);
  expect(hideSecrets('a://'.repeat(250_000))).toBe('a://'.repeat(250_000));
});
