import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const packageDir = resolve(import.meta.dirname, '..');
const readme = readFileSync(resolve(packageDir, 'README.md'), 'utf8');
const section = readme.slice(readme.indexOf('## HTTP middleware (Express and Fastify)'));
const example = (heading: string) => {
  const from = section.indexOf(`### ${heading}`);
  const match = /```ts\n([\s\S]*?)```/.exec(section.slice(from));
  if (from === -1 || !match?.[1]) throw new Error(`README: no example under ### ${heading}`);
  return match[1];
};

// The examples import '@holdfast/idempotency', so they run from inside the package (self-reference).
const scratch = mkdtempSync(resolve(packageDir, 'test', '.readme-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

async function runExample(heading: string): Promise<string> {
  const file = resolve(scratch, `${heading.toLowerCase()}.ts`);
  writeFileSync(file, example(heading));
  const { stdout } = await run(process.execPath, ['--conditions=@holdfast/source', '--import', 'tsx', file], {
    cwd: packageDir,
    timeout: 30_000,
  });
  return stdout;
}

// Each starts a Node process under tsx: seconds on a busy 2-core machine, hence the longer limit.
describe('README: HTTP middleware examples run as printed', { timeout: 40_000 }, () => {
  it('Express', async () => {
    const out = await runExample('Express');
    expect(out).toContain('201 { id: 1, amount: 4200 }');
    expect(out).toContain('201 true { id: 1, amount: 4200 }');
    expect(out).toContain('{ charges: 1 }');
  });

  it('Fastify', async () => {
    const out = await runExample('Fastify');
    expect(out).toContain('201 true { id: 1, amount: 4200 }');
    expect(out).toContain('422 urn:holdfast:problem:idempotency-key-reused');
  });
});
