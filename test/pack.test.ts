import { execFile, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pnpm } from './support/pnpm.js';

// Every publishable package and every entry point in its exports, as a user gets them: packed as
// publishing packs them, installed with exactly the install line its README gives, imported from
// ESM and CommonJS, and type-checked under moduleResolution node10, node16 and bundler.
// Packages and entries are read from packages/*/package.json: a new package is covered by itself.

const root = resolve(import.meta.dirname, '..');
const scratch = mkdtempSync(join(tmpdir(), 'holdfast-pack-'));
const tarballs = join(scratch, 'tarballs');
const run = promisify(execFile);

interface Manifest {
  name: string;
  version: string;
  private?: boolean;
  exports?: Record<string, unknown>;
  publishConfig?: { exports?: Record<string, unknown> };
}

interface Package {
  readonly dir: string;
  readonly manifest: Manifest;
  /** Subpaths of its exports that are code: '.', './express', ... */
  readonly subpaths: readonly string[];
  /** Every `npm install` line of its README, as the words after `install`, comments left out. */
  readonly installLines: readonly (readonly string[])[];
}

interface Entry {
  readonly pkg: Package;
  /** The key in its exports: '.', './express'. */
  readonly subpath: string;
  /** What a user imports: '@holdfast/idempotency/express'. */
  readonly specifier: string;
  /** The scratch project it is installed in. */
  project: string;
}

const packages: Package[] = readdirSync(join(root, 'packages'))
  .filter((name) => existsSync(join(root, 'packages', name, 'package.json')))
  .sort()
  .map((name) => {
    const dir = join(root, 'packages', name);
    const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Manifest;
    const exports = manifest.publishConfig?.exports ?? manifest.exports ?? { '.': {} };
    const subpaths = Object.keys(exports).filter((key) => !key.endsWith('.json'));
    return { dir, manifest, subpaths, installLines: installLines(join(dir, 'README.md')) };
  })
  .filter((pkg) => !pkg.manifest.private);

/** The `npm install` commands in the README's shell fences: their arguments, without comments. */
function installLines(readme: string): string[][] {
  if (!existsSync(readme)) return [];
  const lines: string[][] = [];
  for (const fence of readFileSync(readme, 'utf8').matchAll(/^```(?:sh|bash|shell)\n([\s\S]*?)^```/gm)) {
    for (const line of (fence[1] ?? '').split('\n')) {
      const words = line.replace(/#.*$/, '').trim().split(/\s+/);
      if (words[0] === 'npm' && (words[1] === 'install' || words[1] === 'i')) {
        lines.push(words.slice(2).filter((w) => !w.startsWith('-')));
      }
    }
  }
  return lines;
}

/**
 * The install line an entry needs: the README's first line that names the package; for a subpath
 * entry such as './express', also the line that names what it integrates with ('express').
 */
function installFor(pkg: Package, subpath: string): string[] {
  const name = pkg.manifest.name;
  const first = pkg.installLines.find((line) => line.includes(name));
  if (first === undefined) return [];
  const peer = subpath.slice(2);
  const integration = pkg.installLines.find((line) => line.includes(name) && line.includes(peer));
  return [...new Set([...first, ...(integration ?? [])])];
}

const entries: Entry[] = packages.flatMap((pkg) =>
  pkg.subpaths.map((subpath) => ({
    pkg,
    subpath,
    specifier: pkg.manifest.name + subpath.slice(1),
    project: '',
  })),
);

/** Runs `tasks` with at most `limit` at once (npm installs wait on I/O more than on the CPU). */
async function pooled<T>(tasks: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const results: T[] = [];
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await (tasks[i] as () => Promise<T>)();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return results;
}

/** The dist files the exports point at, newer than every source file: else build. */
function needsBuild(): boolean {
  const newest = (dir: string): number =>
    existsSync(dir)
      ? Math.max(
          0,
          ...readdirSync(dir, { withFileTypes: true }).map((d) =>
            d.isDirectory() ? newest(join(dir, d.name)) : statSync(join(dir, d.name)).mtimeMs,
          ),
        )
      : 0;
  return packages.some((pkg) => {
    const dist = join(pkg.dir, 'dist');
    if (!existsSync(dist)) return true;
    const built = Math.min(...readdirSync(dist).map((f) => statSync(join(dist, f)).mtimeMs));
    const exported = JSON.stringify(pkg.manifest.publishConfig?.exports ?? pkg.manifest.exports ?? {});
    const missing = [...exported.matchAll(/"\.\/(dist\/[^"]+)"/g)].some((m) => !existsSync(join(pkg.dir, m[1] ?? '')));
    return missing || newest(join(pkg.dir, 'src')) > built;
  });
}

interface Loaded {
  readonly ok: boolean;
  readonly keys?: string[];
  readonly error?: string;
}
/** specifier -> what `import()` and `require()` gave, per scratch project. */
const esm = new Map<string, Loaded>();
const cjs = new Map<string, Loaded>();
/** moduleResolution -> tsc's output. */
const typecheck = new Map<string, string>();
const installs = new Map<string, { line: string; error?: string }>();

const loader = (kind: 'esm' | 'cjs', specifiers: string[]) => `
const out = {};
(async () => {
  for (const s of ${JSON.stringify(specifiers)}) {
    try {
      const m = ${kind === 'esm' ? 'await import(s)' : 'require(s)'};
      out[s] = { ok: true, keys: Object.keys(m).filter((k) => k !== 'default' && k !== 'module.exports').sort() };
    } catch (error) {
      out[s] = { ok: false, error: String(error && (error.code ? error.code + ': ' : '') + (error && error.message)).split('\\n')[0] };
    }
  }
  process.stdout.write(JSON.stringify(out));
})();
`;

const typesFile = (specifiers: string[]) =>
  `${specifiers.map((s, i) => `import * as m${i} from '${s}';`).join('\n')}
type IsAny<T> = 0 extends 1 & T ? true : false;
${specifiers.map((_, i) => `export const notAny${i}: IsAny<typeof m${i}> = false;`).join('\n')}
`;

const modes = {
  node10: { module: 'commonjs', moduleResolution: 'node10', files: ['types.ts'] },
  node16: { module: 'node16', moduleResolution: 'node16', files: ['types.mts', 'types.cts'] },
  bundler: { module: 'esnext', moduleResolution: 'bundler', files: ['types.ts'] },
} as const;

beforeAll(async () => {
  const started = Date.now();
  if (needsBuild()) pnpm(['run', 'build'], root);
  const builtAt = Date.now();
  // pnpm pack, as publishing does: it applies publishConfig (no source condition in the tarball).
  mkdirSync(tarballs);
  pnpm(['-r', '--filter', './packages/**', 'pack', '--pack-destination', tarballs], root);
  const packedAt = Date.now();
  const tarball = new Map(
    packages.map((pkg) => [
      pkg.manifest.name,
      join(tarballs, `${pkg.manifest.name.replace('@', '').replace('/', '-')}-${pkg.manifest.version}.tgz`),
    ]),
  );

  // One scratch project per distinct install line. Our packages resolve to their tarballs wherever
  // they are asked for (as if the registry held them); everything else comes from the registry.
  const projects = new Map<string, { dir: string; words: string[]; entries: Entry[] }>();
  for (const entry of entries) {
    const words = installFor(entry.pkg, entry.subpath);
    const key = words.join(' ');
    let project = projects.get(key);
    if (project === undefined) {
      project = { dir: join(scratch, `p${projects.size}`), words, entries: [] };
      projects.set(key, project);
    }
    project.entries.push(entry);
    entry.project = project.dir;
  }
  await pooled(
    [...projects.values()].map((project) => async () => {
      mkdirSync(project.dir);
      const overrides = Object.fromEntries(
        [...tarball].filter(([name]) => !project.words.includes(name)).map(([name, file]) => [name, `file:${file}`]),
      );
      writeFileSync(join(project.dir, 'package.json'), JSON.stringify({ name: 'scratch', private: true, overrides }));
      const args = project.words.map((w) => tarball.get(w) ?? w);
      const line = `npm install ${project.words.join(' ')}`;
      for (const entry of project.entries) installs.set(entry.specifier, { line });
      if (args.length === 0) return;
      try {
        await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', ...args], {
          cwd: project.dir,
        });
      } catch (error) {
        for (const entry of project.entries) installs.set(entry.specifier, { line, error: String(error) });
        return;
      }
      const specifiers = project.entries.map((e) => e.specifier);
      writeFileSync(join(project.dir, 'load.mjs'), loader('esm', specifiers));
      writeFileSync(join(project.dir, 'load.cjs'), loader('cjs', specifiers));
      for (const file of ['types.ts', 'types.mts', 'types.cts']) {
        writeFileSync(join(project.dir, file), typesFile(specifiers));
      }
      for (const [file, into] of [
        ['load.mjs', esm],
        ['load.cjs', cjs],
      ] as const) {
        const { stdout } = await run(process.execPath, [file], { cwd: project.dir, timeout: 30_000 });
        for (const [s, loaded] of Object.entries(JSON.parse(stdout) as Record<string, Loaded>)) into.set(s, loaded);
      }
    }),
    8,
  );
  const installedAt = Date.now();

  // One tsc per moduleResolution over every project: each file resolves from its own node_modules.
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const installed = [...projects.values()].filter((p) => existsSync(join(p.dir, 'node_modules')));
  await Promise.all(
    Object.entries(modes).map(async ([mode, { module, moduleResolution, files }]) => {
      const config = join(scratch, `tsconfig.${mode}.json`);
      writeFileSync(
        config,
        JSON.stringify({
          compilerOptions: {
            strict: true,
            noEmit: true,
            skipLibCheck: true,
            target: 'es2022',
            lib: ['es2022', 'dom'],
            types: [],
            module,
            moduleResolution,
          },
          files: installed.flatMap((p) => files.map((f) => join(p.dir, f))),
        }),
      );
      const result = await run(process.execPath, [tsc, '-p', config], { cwd: scratch }).catch(
        (error: { stdout?: string; stderr?: string }) => ({ stdout: `${error.stdout}${error.stderr}`, stderr: '' }),
      );
      typecheck.set(mode, result.stdout);
    }),
  );
  const seconds = (from: number, to: number) => `${((to - from) / 1000).toFixed(1)} s`;
  console.log(
    `pack test: build ${seconds(started, builtAt)}, pack ${seconds(builtAt, packedAt)}, ` +
      `${projects.size} installs and imports ${seconds(packedAt, installedAt)}, tsc ${seconds(installedAt, Date.now())}`,
  );
}, 900_000);

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe.each(entries)('$specifier, packed and installed with its README install line', (entry) => {
  it('has an install line in its README, and installs', () => {
    expect(installFor(entry.pkg, entry.subpath)).toContain(entry.pkg.manifest.name);
    expect(installs.get(entry.specifier)?.error).toBeUndefined();
  });

  it('imports from ESM and from CommonJS, with the same named exports', () => {
    const fromEsm = esm.get(entry.specifier);
    const fromCjs = cjs.get(entry.specifier);
    expect({ ...fromEsm, keys: undefined }, `import('${entry.specifier}')`).toEqual({ ok: true, keys: undefined });
    expect({ ...fromCjs, keys: undefined }, `require('${entry.specifier}')`).toEqual({ ok: true, keys: undefined });
    expect(fromEsm?.keys?.length).toBeGreaterThan(0);
    expect(fromCjs?.keys).toEqual(fromEsm?.keys);
  });

  it.each(Object.keys(modes))('has types under moduleResolution %s', (mode) => {
    const output = typecheck.get(mode);
    expect(output, `tsc did not run for ${mode}`).toBeDefined();
    // Each project has its own types files: line i + 1 imports its i-th entry, line n + 2 + i
    // says that entry's types are not \`any\`. Only errors on those two lines concern this entry.
    const mine = entries.filter((e) => e.project === entry.project);
    const i = mine.indexOf(entry);
    const errors = (output ?? '').split('\n').filter((line) => {
      const at = /^(.+?)\((\d+),\d+\): error/.exec(line);
      if (!at) return false;
      const file = resolve(scratch, at[1] ?? '');
      const row = Number(at[2]);
      return file.startsWith(join(entry.project, 'types.')) && (row === i + 1 || row === mine.length + 2 + i);
    });
    expect(errors, `${installs.get(entry.specifier)?.line}\n${output}`).toEqual([]);
  });
});

describe('the packed @holdfast/core', () => {
  const core = () => entries.find((e) => e.specifier === '@holdfast/core')?.project ?? '';
  const node = (file: string, source: string) => {
    writeFileSync(join(core(), file), source);
    // The 60 s timeout must not keep the process alive once the call is done: it exits by itself.
    return spawnSync(process.execPath, [file], { cwd: core(), encoding: 'utf8', timeout: 20_000 });
  };
  const script = (load: string) => `
${load}
const clock = core.realClock;
const policy = core.pipeline(core.timeout(60_000), core.timeout(30_000, { strategy: 'aggressive' }));
policy.execute(({ attempt, signal }) => 'ran attempt ' + attempt + ', aborted=' + signal.aborted).then((out) => {
  console.log(out + '; TimeoutError is HoldfastError: ' + (new core.TimeoutError('t', 1) instanceof core.HoldfastError) + '; now is a number: ' + (typeof clock.now() === 'number'));
});
`;

  it('installs every package without the workspace-only source condition', () => {
    for (const entry of entries) {
      const installed = join(entry.project, 'node_modules', ...entry.pkg.manifest.name.split('/'), 'package.json');
      const manifest = JSON.parse(readFileSync(installed, 'utf8')) as Manifest;
      expect(manifest.exports).toBeDefined();
      expect(JSON.stringify(manifest.exports)).not.toContain('@holdfast/source');
    }
  });

  it('runs pipeline(timeout(...)) from require() and from import, and exits by itself', () => {
    for (const [file, load] of [
      ['use.cjs', `const core = require('@holdfast/core');`],
      ['use.mjs', `import * as core from '@holdfast/core';`],
    ] as const) {
      const result = node(file, script(load));
      expect(result.stderr).toBe('');
      expect(result.stdout.trim()).toBe(
        'ran attempt 1, aborted=false; TimeoutError is HoldfastError: true; now is a number: true',
      );
      expect(result.status).toBe(0);
    }
  });

  it('shares one global bus between the ESM and CJS copies of the same major', () => {
    const result = node(
      'both.mjs',
      `import { createRequire } from 'node:module';
import * as esm from '@holdfast/core';
const cjs = createRequire(import.meta.url)('@holdfast/core');
const seen = [];
esm.bus.on('timeout', (e) => seen.push(e.source));
cjs.bus.emit({ type: 'timeout', source: 'from-cjs', time: 0, timeout: 1, strategy: 'cooperative' });
console.log(String(esm.bus === cjs.bus) + ' ' + seen.join(','));`,
    );
    expect(result.stdout.trim()).toBe('true from-cjs');
  });

  it('says loudly when a copy of another major version already holds a bus', () => {
    const result = node(
      'split.cjs',
      `globalThis[Symbol.for('@holdfast/core/bus-versions')] = new Map([[1, '1.4.0']]);
const core = require('@holdfast/core');
core.bus.on('timeout', () => {});`,
    );
    expect(result.status).toBe(0);
    expect(result.stderr).toContain('HOLDFAST_BUS_SPLIT');
    expect(result.stderr).toContain('@holdfast/core 0.1.0 is loaded beside 1.4.0');
  });
});
