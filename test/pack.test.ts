import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installLines, packageOf } from '../scripts/doc-samples.mjs';
import {
  type Manifest,
  npmInstallPacked,
  packedWorkspace,
  removeLater,
  root,
  workspacePackages,
} from './support/packed.js';

// Every publishable package and every entry point in its exports, as a user gets them: packed as
// publishing packs them, installed with exactly the install line its README gives, imported from
// ESM and CommonJS (child processes), and type-checked under moduleResolution node10, node16 and
// bundler; what each entry loads must be declared. Packages and entries are read from
// packages/*/package.json: a new package is covered by itself. Needs `pnpm build` (else builds).

const scratch = mkdtempSync(join(tmpdir(), 'holdfast-pack-'));
const project = join(scratch, 'project');
const run = promisify(execFile);

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
}

const packages: Package[] = workspacePackages.map((pkg) => ({
  ...pkg,
  installLines: existsSync(join(root, pkg.readme)) ? installLines(pkg.readme) : [],
}));

/**
 * The install line an entry needs: the README's first line that names the package; for a subpath
 * entry such as './express', also the line that names what it integrates with ('express').
 */
function installFor(pkg: Package, subpath: string): readonly string[] {
  const name = pkg.manifest.name;
  const first = pkg.installLines.find((line) => line.includes(name));
  if (first === undefined || subpath === '.') return first ?? [];
  const peer = subpath.slice(2);
  const integration = pkg.installLines.find((line) => line.includes(name) && line.includes(peer));
  return [...new Set([...first, ...(integration ?? [])])];
}

const entries: Entry[] = packages.flatMap((pkg) =>
  pkg.subpaths.map((subpath) => ({
    pkg,
    subpath,
    specifier: pkg.manifest.name + subpath.slice(1),
  })),
);

/**
 * The packages an entry's built files import when they load, ESM and CommonJS, following its
 * own chunks: `import ... from 'x'`, `import 'x'`, `require('x')`; not a lazy `import('x')`.
 */
function loadedPackages(entry: Entry): string[] {
  const { publishConfig, exports } = entry.pkg.manifest;
  const exported = JSON.stringify((publishConfig?.exports ?? exports)?.[entry.subpath] ?? {});
  const files = [...exported.matchAll(/"\.\/(dist\/[^"]+\.c?js)"/g)].map((m) => join(entry.pkg.dir, m[1] ?? ''));
  const seen = new Set<string>();
  const names = new Set<string>();
  const statics =
    /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*["']([^"']+)["']|(?:^|[\s;])import\s*["']([^"']+)["']|\brequire\(["']([^"']+)["']\)/g;
  while (files.length > 0) {
    const file = files.pop() as string;
    if (seen.has(file) || !existsSync(file)) continue;
    seen.add(file);
    for (const m of readFileSync(file, 'utf8').matchAll(statics)) {
      const specifier = m[1] ?? m[2] ?? m[3] ?? '';
      if (specifier.startsWith('.')) files.push(resolve(dirname(file), specifier));
      else if (!specifier.startsWith('node:') && !builtinModules.includes(specifier)) {
        names.add(packageOf(specifier));
      }
    }
  }
  return [...names].sort();
}

interface Loaded {
  readonly ok: boolean;
  readonly keys?: string[];
  readonly error?: string;
}
/** specifier -> what `import()` and `require()` gave in the scratch project. */
const esm = new Map<string, Loaded>();
const cjs = new Map<string, Loaded>();
/** moduleResolution -> tsc's output. */
const typecheck = new Map<string, string>();
let installError: string | undefined;

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
  mkdirSync(project);
  const { tarball, buildMs, packMs, cached } = packedWorkspace();
  const packedAt = Date.now();

  // One scratch project, one npm install: every entry's install line together. What one line
  // installs could hide what another line lacks: the test of declared dependencies below is what
  // catches that.
  const words = [...new Set(entries.flatMap((e) => installFor(e.pkg, e.subpath)))];
  try {
    await npmInstallPacked(project, words, tarball);
  } catch (error) {
    installError = String(error);
    return;
  }
  const installedAt = Date.now();

  const specifiers = entries.map((e) => e.specifier);
  writeFileSync(join(project, 'load.mjs'), loader('esm', specifiers));
  writeFileSync(join(project, 'load.cjs'), loader('cjs', specifiers));
  for (const file of ['types.ts', 'types.mts', 'types.cts']) writeFileSync(join(project, file), typesFile(specifiers));
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  await Promise.all([
    ...(
      [
        ['load.mjs', esm],
        ['load.cjs', cjs],
      ] as const
    ).map(async ([file, into]) => {
      const { stdout } = await run(process.execPath, [file], { cwd: project, timeout: 60_000 });
      for (const [s, loaded] of Object.entries(JSON.parse(stdout) as Record<string, Loaded>)) into.set(s, loaded);
    }),
    // One tsc per moduleResolution; a strict user project, with skipLibCheck as most have it.
    ...Object.entries(modes).map(async ([mode, { module, moduleResolution, files }]) => {
      const config = join(project, `tsconfig.${mode}.json`);
      const compilerOptions = { strict: true, noEmit: true, skipLibCheck: true, target: 'es2022', types: [] };
      writeFileSync(
        config,
        JSON.stringify({
          compilerOptions: { ...compilerOptions, lib: ['es2022', 'dom'], module, moduleResolution },
          files,
        }),
      );
      const result = await run(process.execPath, [tsc, '-p', config], { cwd: project }).catch(
        (error: { stdout?: string; stderr?: string }) => ({ stdout: `${error.stdout}${error.stderr}`, stderr: '' }),
      );
      typecheck.set(mode, result.stdout);
    }),
  ]);
  const seconds = (from: number, to: number) => `${((to - from) / 1000).toFixed(1)} s`;
  console.log(
    `pack test: build ${seconds(0, buildMs)}, pack ${seconds(0, packMs)}${cached ? ' (packed already)' : ''}, ` +
      `npm install ${seconds(packedAt, installedAt)}, imports and tsc ${seconds(installedAt, Date.now())}`,
  );
}, 900_000);

afterAll(() => removeLater(scratch));

describe.each(entries)('$specifier, packed and installed with its README install line', (entry) => {
  const line = () => `npm install ${installFor(entry.pkg, entry.subpath).join(' ')}`;

  it('has an install line in its README, and installs', () => {
    expect(installFor(entry.pkg, entry.subpath)).toContain(entry.pkg.manifest.name);
    expect(installError).toBeUndefined();
  });

  it('loads only what its package declares and its install line installs', () => {
    // Whatever the entry imports when it loads (not a lazy import()) is a dependency, or a peer
    // that the entry's install line names: never an optional peer the user was not told about.
    const { dependencies = {}, peerDependencies = {} } = entry.pkg.manifest;
    const named = installFor(entry.pkg, entry.subpath);
    const undeclared = loadedPackages(entry).filter(
      (name) => !(name in dependencies) && !(name in peerDependencies && named.includes(name)),
    );
    expect(undeclared, `${line()}; dependencies ${Object.keys(dependencies).join(', ')}`).toEqual([]);
  });

  it('imports from ESM and from CommonJS, with the same named exports', () => {
    const fromEsm = esm.get(entry.specifier);
    const fromCjs = cjs.get(entry.specifier);
    expect({ ...fromEsm, keys: undefined }, `import('${entry.specifier}') after ${line()}`).toEqual({
      ok: true,
      keys: undefined,
    });
    expect({ ...fromCjs, keys: undefined }, `require('${entry.specifier}') after ${line()}`).toEqual({
      ok: true,
      keys: undefined,
    });
    expect(fromEsm?.keys?.length).toBeGreaterThan(0);
    expect(fromCjs?.keys).toEqual(fromEsm?.keys);
  });

  it.each(Object.keys(modes))('has types under moduleResolution %s', (mode) => {
    const output = typecheck.get(mode);
    expect(output, `tsc did not run for ${mode}`).toBeDefined();
    // Line i + 1 of a types file imports the i-th entry, line n + 2 + i says its types are not
    // \`any\`: only errors on those two lines concern this entry.
    const i = entries.indexOf(entry);
    const errors = (output ?? '').split('\n').filter((text) => {
      const at = /^(.+?)\((\d+),\d+\): error/.exec(text);
      const row = Number(at?.[2]);
      return at !== null && (row === i + 1 || row === entries.length + 2 + i);
    });
    expect(errors, output).toEqual([]);
  });
});

describe('the packed packages', () => {
  const node = (file: string, source: string) => {
    writeFileSync(join(project, file), source);
    // The 60 s timeout must not keep the process alive once the call is done: it exits by itself.
    return spawnSync(process.execPath, [file], { cwd: project, encoding: 'utf8', timeout: 20_000 });
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
      const installed = join(project, 'node_modules', ...entry.pkg.manifest.name.split('/'), 'package.json');
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
