import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { pnpm } from './pnpm.js';

// The packages as a user gets them: built, packed as publishing packs them, and installed from
// their tarballs in a scratch project with npm. Shared by test/pack.test.ts (entry points) and
// test/readme-packed.test.ts (README samples).

export const root = resolve(import.meta.dirname, '..', '..');
const run = promisify(execFile);

export interface Manifest {
  name: string;
  version: string;
  private?: boolean;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  exports?: Record<string, unknown>;
  publishConfig?: { exports?: Record<string, unknown> };
}

/** A publishable package of packages/*. */
export interface WorkspacePackage {
  readonly dir: string;
  /** Its README, relative to the root: 'packages/limit/README.md'. */
  readonly readme: string;
  readonly manifest: Manifest;
  /** Subpaths of its exports that are code: '.', './express', ... */
  readonly subpaths: readonly string[];
}

/** Every publishable package of packages/*, by folder name. */
export const workspacePackages: readonly WorkspacePackage[] = readdirSync(join(root, 'packages'))
  .filter((name) => existsSync(join(root, 'packages', name, 'package.json')))
  .sort()
  .map((name) => {
    const dir = join(root, 'packages', name);
    const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Manifest;
    const exports = manifest.publishConfig?.exports ?? manifest.exports ?? { '.': {} };
    const subpaths = Object.keys(exports).filter((key) => !key.endsWith('.json'));
    return { dir, readme: `packages/${name}/README.md`, manifest, subpaths };
  })
  .filter((pkg) => !pkg.manifest.private);

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
  return workspacePackages.some((pkg) => {
    const dist = join(pkg.dir, 'dist');
    if (!existsSync(dist)) return true;
    const built = Math.min(...readdirSync(dist).map((f) => statSync(join(dist, f)).mtimeMs));
    const exported = JSON.stringify(pkg.manifest.publishConfig?.exports ?? pkg.manifest.exports ?? {});
    const missing = [...exported.matchAll(/"\.\/(dist\/[^"]+)"/g)].some((m) => !existsSync(join(pkg.dir, m[1] ?? '')));
    return missing || newest(join(pkg.dir, 'src')) > built;
  });
}

/**
 * Builds when {@link needsBuild}, one build at a time across vitest's workers (test files that
 * pack run at once, and two builds writing the same dist would break each other): a lock
 * directory, taken over when older than 15 minutes (a run that died holding it).
 */
function buildIfNeeded(): void {
  const lock = join(root, 'node_modules', '.holdfast-build.lock');
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (existsSync(lock) && Date.now() - statSync(lock).mtimeMs > 15 * 60_000)
        rmSync(lock, { force: true, recursive: true });
      else Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500);
    }
  }
  try {
    if (needsBuild()) pnpm(['run', 'build'], root);
  } finally {
    rmSync(lock, { force: true, recursive: true });
  }
}

/** What {@link packWorkspace} made, and how long it took. */
export interface Packed {
  /** Package name -> its tarball. */
  readonly tarball: ReadonlyMap<string, string>;
  readonly buildMs: number;
  readonly packMs: number;
}

/**
 * Builds the packages when a dist is missing or older than its source (one build at a time), then packs every one
 * into `into` with `pnpm pack`, as publishing does: it applies publishConfig (no source
 * condition in the tarball) and turns `workspace:^` into versions.
 */
export function packWorkspace(into: string): Packed {
  const started = Date.now();
  buildIfNeeded();
  const builtAt = Date.now();
  mkdirSync(into, { recursive: true });
  pnpm(['-r', '--filter', './packages/**', 'pack', '--pack-destination', into], root);
  const tarball = new Map(
    workspacePackages.map((pkg) => [
      pkg.manifest.name,
      join(into, `${pkg.manifest.name.replace('@', '').replace('/', '-')}-${pkg.manifest.version}.tgz`),
    ]),
  );
  return { tarball, buildMs: builtAt - started, packMs: Date.now() - builtAt };
}

/**
 * `npm install <words>` in a new scratch project `project`, our packages as tarballs wherever
 * they are asked for (as if the registry held them: a word that names one installs its tarball,
 * and a dependency on one resolves to it), anything else from the registry (its offline cache
 * when it has it). Rejects with npm's output when the install fails.
 */
export async function npmInstallPacked(
  project: string,
  words: readonly string[],
  tarball: ReadonlyMap<string, string>,
  options: { timeoutMs?: number } = {},
): Promise<void> {
  mkdirSync(project, { recursive: true });
  const overrides = Object.fromEntries(
    [...tarball].filter(([name]) => !words.includes(name)).map(([name, file]) => [name, `file:${file}`]),
  );
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'scratch', private: true, overrides }));
  await run(
    'npm',
    [
      'install',
      '--no-audit',
      '--no-fund',
      '--prefer-offline',
      '--loglevel=error',
      ...words.map((w) => tarball.get(w) ?? w),
    ],
    { cwd: project, timeout: options.timeoutMs ?? 300_000 },
  );
}
