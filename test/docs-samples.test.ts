import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  fencedBlocks,
  importedPackages,
  installLines,
  markdownFiles,
  root,
  runSample,
  samples,
  typecheck,
  writeSamples,
} from '../scripts/doc-samples.mjs';
import { type RedisServer, redisAvailable, startRedis } from './support/redis.js';

// Every ```ts sample in docs/ and the READMEs is type-checked as a module of its own, in one tsc
// program; those marked ```ts run also run, and must exit 0. ```ts no-check opts a fragment out
// (one that refers to the reader's own app or pool); they are listed below. Same check outside
// vitest: node scripts/doc-samples.mjs
const { checked, skipped } = samples();
const files = [...new Set(checked.map((s) => s.file))];
const runnable = checked.filter((s) => s.run);

describe('code samples in the docs and READMEs', () => {
  // tsc runs in a child process while the samples run (the tests that read its errors come after
  // the runs): before, the worker waited for it, one core idle, and only then ran the samples.
  let typechecked: Promise<string[]> = Promise.resolve(['not type-checked']);
  let redis: RedisServer | undefined;
  beforeAll(async () => {
    writeSamples(checked);
    typechecked = typecheck(checked);
    // Samples that use Redis read REDIS_URL (else 127.0.0.1:6379): a redis-server of this test's own.
    if (runnable.some((s) => /\bREDIS_URL\b/.test(s.code))) {
      if (redisAvailable()) [redis] = await startRedis(1);
      if (redis !== undefined) process.env.REDIS_URL = redis.url;
    }
  }, 60_000);
  afterAll(async () => {
    await typechecked; // tsc is not left running, whatever failed
    delete process.env.REDIS_URL;
    await redis?.stop();
  });

  it.concurrent.for(runnable.map((s) => [`${s.file}:${s.line}`, s] as const))('runs %s', async ([, sample]) => {
    const result = await runSample(sample);
    const why = `${sample.file}:${sample.line} ${result.timedOut ? 'timed out' : `exited ${result.code}`}`;
    expect(result.ok, `${why}\n${result.output}`).toBe(true);
  });

  it.for(files)('%s: its samples type-check', async (file) => {
    const errors = await typechecked;
    expect(errors.filter((e) => e.startsWith(`${file}:`)).join('\n')).toBe('');
  });

  it('fragments opted out with no-check stay few, and each still has code in it', () => {
    if (skipped.length > 0)
      console.info(`not type-checked (no-check): ${skipped.map((b) => `${b.file}:${b.line}`).join(', ')}`);
    expect(skipped.length).toBeLessThanOrEqual(12);
    for (const b of skipped) expect(b.code.trim(), `${b.file}:${b.line}`).not.toBe('');
  });

  it('tsc reports nothing outside the samples', async () => {
    const errors = await typechecked;
    expect(errors.filter((e) => !files.some((file) => e.startsWith(`${file}:`))).join('\n')).toBe('');
  });
});

interface Manifest {
  name: string;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
}
const manifests = readdirSync(join(root, 'packages'))
  .sort()
  .map((dir) => ({
    readme: `packages/${dir}/README.md`,
    manifest: JSON.parse(readFileSync(join(root, 'packages', dir, 'package.json'), 'utf8')) as Manifest,
  }));
const byName = new Map(manifests.map((m) => [m.manifest.name, m.manifest]));
// The clients and frameworks holdfast integrates with (a peer of one of our packages): an app
// that uses an integration has them already.
const integrations = new Set(manifests.flatMap((m) => Object.keys(m.manifest.peerDependencies ?? {})));

/** What `npm install <words>` puts in node_modules: the words, and our packages' dependencies. */
function installed(words: readonly string[]): Set<string> {
  const out = new Set<string>();
  const add = (name: string) => {
    if (out.has(name)) return;
    out.add(name);
    for (const dep of Object.keys(byName.get(name)?.dependencies ?? {})) add(dep);
  };
  for (const word of words) add(word);
  return out;
}

describe('how the docs tell a user to run a sample', () => {
  // Samples use top-level await, which only an ES module has; in a project made by `npm install`
  // (no "type": "module") tsx loads a `.ts` file as CommonJS and fails with "Top-level await is
  // currently not supported with the "cjs" output format". A `.mts` file is an ES module anywhere.
  const usesTopLevelAwait = samples().checked.filter((b) => /^(?!\s)(?!\/\/).*\bawait\b/m.test(b.code));

  it('samples do use top-level await (else this check is moot)', () => {
    expect(usesTopLevelAwait.length).toBeGreaterThan(0);
  });

  it.for(markdownFiles())('%s: names a .mts file where it says to run one with tsx', (file) => {
    const commands = [...readFileSync(join(root, file), 'utf8').matchAll(/`([^`]*\btsx\b[^`]*)`/g)]
      .map((m) => m[1] ?? '')
      .filter((command) => !command.includes('@holdfast/source'));
    expect(commands.filter((command) => /\btsx\s+\S+\.ts\b/.test(command))).toEqual([]);
  });
});

describe('the pnpm the docs tell a user to run', () => {
  // The quick start needs nothing but Node and npm: pnpm comes from npx. A page that then says
  // `pnpm test` must say where that pnpm comes from, else it is "pnpm: command not found".
  const pinned = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { packageManager: string })
    .packageManager;

  it.for(['README.md', 'examples/README.md'])('%s: a bare pnpm command is explained', (file) => {
    const text = readFileSync(join(root, file), 'utf8');
    const bare = [...text.matchAll(/(?:^|`)pnpm (?!@)[a-z-]+/gm)].map((m) => m[0]);
    if (bare.length > 0)
      expect(text, `${file} runs ${bare[0]}`).toContain(`\`pnpm\` stands for \`npx --yes ${pinned}\``);
  });

  it.for(markdownFiles())('%s: names the pnpm package.json pins', (file) => {
    const versions = [...readFileSync(join(root, file), 'utf8').matchAll(/\bpnpm@[0-9][\w.-]*/g)].map((m) => m[0]);
    for (const version of versions) expect(version).toBe(pinned);
  });
});

describe('package READMEs, followed as written', () => {
  // The samples above are checked in the workspace, where every package is at hand; a user who
  // runs a README's install lines has only what they install. What a README's sample imports is a
  // Node built-in, installed by one of its install lines (our packages' dependencies included),
  // or a client or framework one of our packages integrates with.
  it.for(manifests.map((m) => m.readme))('%s: its install lines install what its samples import', (readme) => {
    const have = installed(installLines(readme).flat());
    const missing = fencedBlocks(readme)
      .filter((b) => ['ts', 'typescript', 'js', 'javascript'].includes(b.lang))
      .flatMap((b) =>
        importedPackages(b.code)
          .filter((name) => !name.startsWith('node:') && !builtinModules.includes(name))
          .filter((name) => !have.has(name) && !integrations.has(name))
          .map((name) => `${readme}:${b.line} imports ${name}`),
      );
    expect(missing, `install lines: ${JSON.stringify(installLines(readme))}`).toEqual([]);
  });

  it.for(manifests.map((m) => m.readme))(
    '%s: a command it gives a user loads what its install lines install',
    (readme) => {
      // `node --import <loader> file.ts`; commands run in this repository (the source condition) aside.
      const have = installed(installLines(readme).flat());
      const commands = [...readFileSync(join(root, readme), 'utf8').matchAll(/`(node [^`]*)`/g)].map((m) => m[1] ?? '');
      const missing = commands
        .filter((command) => !command.includes('@holdfast/source'))
        .flatMap((command) => [...command.matchAll(/--(?:import|require|loader)[= ](\S+)/g)].map((m) => m[1] ?? ''))
        .filter((name) => !name.startsWith('.') && !have.has(name));
      expect(missing, `install lines: ${JSON.stringify(installLines(readme))}`).toEqual([]);
    },
  );
});
