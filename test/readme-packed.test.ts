import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Block, fencedBlocks, importedPackages, installLines } from '../scripts/doc-samples.mjs';
import {
  type Manifest,
  npmInstallPacked,
  packedWorkspace,
  removeLater,
  root,
  workspacePackages,
} from './support/packed.js';
import { type RedisServer, redisAvailable, startRedis } from './support/redis.js';

// Each package README followed as a user follows it, against the packed packages: a scratch
// project of its own (outside the workspace), `npm install` with exactly the README's install
// lines (our packages as their `pnpm pack` tarballs), then its TypeScript samples type-checked by
// tsc against what was installed, and its runnable samples (```ts run, ```js run) run as the
// README says (an .mts with tsx, an .mjs with node): each must exit 0 by itself, within 20 s.
// test/docs-samples.test.ts checks the same samples in the workspace, where every package and
// its source are at hand; this is what a user gets.
//
// Samples that use a client or framework one of our packages integrates with (express, fastify,
// ioredis, pg) get it installed beside the README's words when no install line names it (a user
// who reads the Express section has Express), at the workspace's version, with its @types. Samples
// that need Redis get REDIS_URL, a redis-server of this test's own.

const scratch = mkdtempSync(join(tmpdir(), 'holdfast-readmes-'));
const run = promisify(execFile);
const SAMPLE_TIMEOUT_MS = 20_000;

const workspace = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  devDependencies: Record<string, string>;
};
const byName = new Map(workspacePackages.map((p) => [p.manifest.name, p.manifest]));
const integrations = new Set(workspacePackages.flatMap((p) => Object.keys(p.manifest.peerDependencies ?? {})));
/** The version of a workspace dev dependency as installed (the root's node_modules). */
const installedVersion = (name: string) =>
  (JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')) as Manifest).version;

interface Sample extends Block {
  /** The file it is saved as in the scratch project. */
  readonly module: string;
  readonly typescript: boolean;
  readonly run: boolean;
}

interface Readme {
  readonly readme: string;
  readonly name: string;
  /** The words of its install lines. */
  readonly words: readonly string[];
  /** What its samples import that no install line installs but an integration a user has. */
  readonly integrations: readonly string[];
  readonly samples: readonly Sample[];
  readonly project: string;
}

/** What `npm install <words>` makes importable: the words, and our packages' dependencies. */
function installedBy(words: readonly string[]): Set<string> {
  const out = new Set<string>();
  const add = (name: string) => {
    if (out.has(name)) return;
    out.add(name);
    for (const dep of Object.keys(byName.get(name)?.dependencies ?? {})) add(dep);
  };
  for (const word of words) add(word.replace(/(.)@.*$/, '$1'));
  return out;
}

const readmes: Readme[] = workspacePackages
  .filter((pkg) => existsSync(join(root, pkg.readme)))
  .map((pkg) => {
    const words = [...new Set(installLines(pkg.readme).flat())];
    const samples = fencedBlocks(pkg.readme)
      .filter(
        (b) =>
          (['ts', 'typescript'].includes(b.lang) && !b.flags.includes('no-check')) ||
          (['js', 'javascript'].includes(b.lang) && b.flags.includes('run')),
      )
      .map((b) => {
        const typescript = b.lang.startsWith('t');
        return { ...b, typescript, run: b.flags.includes('run'), module: `L${b.line}.${typescript ? 'mts' : 'mjs'}` };
      });
    const have = installedBy(words);
    const imported = new Set(samples.flatMap((s) => importedPackages(s.code)));
    const extra = [...imported].filter(
      (name) =>
        !have.has(name) && integrations.has(name) && !name.startsWith('node:') && !builtinModules.includes(name),
    );
    const name = pkg.manifest.name;
    return {
      readme: pkg.readme,
      name,
      words,
      integrations: extra,
      samples,
      project: join(scratch, name.split('/')[1] ?? name),
    };
  })
  .filter((r) => r.samples.length > 0);

interface Outcome {
  installError?: string;
  /** tsc's errors, each at its README line. */
  typeErrors: string[];
  runs: Map<number, { code: number | null; killed: boolean; output: string }>;
  /** How long each step took. */
  ms: Record<string, number>;
}
const outcomes = new Map<string, Outcome>();
let redis: RedisServer | undefined;

/** Runs `task` over `items`, `width` at a time. */
async function pool<T>(items: readonly T[], width: number, task: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  await Promise.all(
    Array.from({ length: width }, async () => {
      for (let item = queue.shift(); item !== undefined; item = queue.shift()) await task(item);
    }),
  );
}

const tsx = pathToFileURL(join(root, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');

/** Runs one sample in its project; killed past {@link SAMPLE_TIMEOUT_MS}: something held it open. */
function runSample(r: Readme, s: Sample): Promise<{ code: number | null; killed: boolean; output: string }> {
  return new Promise((done, fail) => {
    const args = s.typescript ? ['--import', tsx, s.module] : [s.module];
    const env: Record<string, string | undefined> = { ...process.env, NODE_OPTIONS: '' };
    if (redis !== undefined) env.REDIS_URL = redis.url;
    const child = spawn(process.execPath, args, { cwd: r.project, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let killed = false;
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const guard = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, SAMPLE_TIMEOUT_MS);
    child.on('error', fail);
    child.on('close', (code) => {
      clearTimeout(guard);
      done({ code, killed, output: output.trim() });
    });
  });
}

/** Installs a README's project and runs its runnable samples. */
async function follow(r: Readme): Promise<void> {
  const outcome: Outcome = { typeErrors: [], runs: new Map(), ms: {} };
  outcomes.set(r.readme, outcome);
  const started = Date.now();
  const words = [
    ...r.words,
    ...r.integrations.map((name) => `${name}@${installedVersion(name)}`),
    ...r.integrations
      .filter((name) => `@types/${name}` in workspace.devDependencies)
      .map((name) => `@types/${name}@${installedVersion(`@types/${name}`)}`),
  ];
  try {
    await npmInstallPacked(r.project, words, packed.tarball, { timeoutMs: 120_000 });
  } catch (error) {
    outcome.installError = String(error);
    return;
  }
  outcome.ms.install = Date.now() - started;
  // Each sample a module of its own (samples use top-level await: an ES module), as docs-samples does.
  for (const s of r.samples) writeFileSync(join(r.project, s.module), `${s.code}\nexport {};\n`);
  for (const s of r.samples.filter((x) => x.run)) outcome.runs.set(s.line, await runSample(r, s));
  outcome.ms.run = Date.now() - started - outcome.ms.install;
}

/**
 * Type-checks the TypeScript samples of every project in one tsc program (lib and @types/node
 * parsed once): each sample's imports resolve from its own project's node_modules, as in a
 * project of its own. A strict user project, ES modules resolved as Node resolves them, the
 * workspace's @types/node (the only global types, so one copy).
 */
async function typecheck(): Promise<void> {
  const compilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: 'es2022',
    lib: ['es2023'],
    module: 'nodenext',
    moduleResolution: 'nodenext',
    typeRoots: [join(root, 'node_modules', '@types')],
    types: ['node'],
  };
  const installed = readmes.filter((r) => outcomes.get(r.readme)?.installError === undefined);
  const files = installed.flatMap((r) => r.samples.filter((s) => s.typescript).map((s) => join(r.project, s.module)));
  writeFileSync(join(scratch, 'tsconfig.json'), JSON.stringify({ compilerOptions, files }));
  const result = await run(process.execPath, [tsc, '-p', 'tsconfig.json', '--pretty', 'false'], {
    cwd: scratch,
  }).catch((error: { stdout?: string; stderr?: string }) => ({ stdout: `${error.stdout}${error.stderr}` }));
  const byProject = new Map(installed.map((r) => [relative(scratch, r.project), r]));
  let last: string[] | undefined;
  for (const line of result.stdout.split('\n').filter((l) => l.trim())) {
    const at = /^(.+)\/L(\d+)\.mts\((\d+),(\d+)\): (.*)$/.exec(line);
    const r = at && byProject.get(at[1] ?? '');
    if (at && r) {
      last = (outcomes.get(r.readme) as Outcome).typeErrors;
      last.push(`${r.readme}:${Number(at[2]) + Number(at[3])}:${at[4]} ${at[5]}`);
    } else if (/^\s/.test(line) && last !== undefined && last.length > 0) last[last.length - 1] += `\n${line}`;
    else {
      // Not in a sample: every project is told.
      for (const o of outcomes.values()) o.typeErrors.push(line);
      last = undefined;
    }
  }
}

let packed: ReturnType<typeof packedWorkspace>;

beforeAll(async () => {
  const started = Date.now();
  if (readmes.some((r) => r.samples.some((s) => s.run && /\bREDIS_URL\b|ioredis/.test(s.code)))) {
    if (redisAvailable()) [redis] = await startRedis(1);
  }
  packed = packedWorkspace();
  const packedAt = Date.now();
  // Two projects at a time: npm, tsc and the samples each want a CPU.
  await pool(readmes, 2, follow);
  const ranAt = Date.now();
  await typecheck();
  const checkedAt = Date.now();
  console.log(
    `README samples, packed: build ${(packed.buildMs / 1000).toFixed(1)} s, pack ${(packed.packMs / 1000).toFixed(1)} s${packed.cached ? ' (packed already)' : ''}, ` +
      `${readmes.length} projects installed and run in ${((ranAt - packedAt) / 1000).toFixed(1)} s, ` +
      `tsc ${((checkedAt - ranAt) / 1000).toFixed(1)} s ` +
      `(total ${((Date.now() - started) / 1000).toFixed(1)} s): ${readmes
        .map((r) => `${r.name} ${JSON.stringify(outcomes.get(r.readme)?.ms)}`)
        .join(', ')}; integrations added: ${readmes
        .filter((r) => r.integrations.length > 0)
        .map((r) => `${r.name}: ${r.integrations.join(' ')}`)
        .join('; ')}`,
  );
}, 600_000);

afterAll(async () => {
  await redis?.stop();
  removeLater(scratch);
});

describe.each(readmes)('$readme, followed in a scratch project with the packed packages', (r) => {
  const line = `npm install ${r.words.join(' ')}`;

  it('installs with its install lines', () => {
    expect(r.words.length, `${r.readme} has no npm install line`).toBeGreaterThan(0);
    expect(outcomes.get(r.readme)?.installError, line).toBeUndefined();
  });

  const typescript = r.samples.filter((s) => s.typescript);
  if (typescript.length > 0) {
    it.for(typescript.map((s) => s.line))(
      'its TypeScript sample at line %i type-checks against what it installs',
      (at) => {
        const errors = outcomes.get(r.readme)?.typeErrors ?? ['not type-checked'];
        const sample = r.samples.find((s) => s.line === at) as Sample;
        const end = at + sample.code.split('\n').length + 1;
        const mine = errors.filter((e) => {
          const row = Number(/^[^:]+:(\d+):/.exec(e)?.[1]);
          return row > at && row < end;
        });
        expect(mine, `after ${line}`).toEqual([]);
        // An error outside every sample (a config or install problem) fails each sample.
        const elsewhere = errors.filter((e) => !e.startsWith(`${r.readme}:`));
        expect(elsewhere, `after ${line}`).toEqual([]);
      },
    );
  }

  const runnable = r.samples.filter((s) => s.run);
  if (runnable.length > 0) {
    it.for(runnable.map((s) => s.line))('its sample at line %i runs and exits by itself', (at) => {
      const result = outcomes.get(r.readme)?.runs.get(at);
      expect(result, 'did not run').toBeDefined();
      const why = result?.killed
        ? `still running after ${SAMPLE_TIMEOUT_MS} ms: something holds the process open`
        : `exited ${result?.code}`;
      expect({ code: result?.code, killed: result?.killed }, `${r.readme}:${at} ${why}\n${result?.output}`).toEqual({
        code: 0,
        killed: false,
      });
    });
  }
});
