import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
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
  /** Whether {@link packedWorkspace} found the tarballs of these very files packed already. */
  readonly cached?: boolean;
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
  return { tarball: tarballsIn(into), buildMs: builtAt - started, packMs: Date.now() - builtAt };
}

/**
 * What goes into the tarballs: every file of every package folder but its node_modules (dist,
 * package.json, README, and its source and tests too, which only makes a new pack more often),
 * and the root package.json (the pnpm that packs). A hash of paths and contents.
 */
function packInputs(): string {
  const hash = createHash('sha256');
  const walk = (dir: string): void => {
    for (const d of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (d.name === 'node_modules') continue;
      const path = join(dir, d.name);
      if (d.isDirectory()) walk(path);
      else if (d.isFile()) hash.update(`${path}\0`).update(readFileSync(path)).update('\0');
    }
  };
  for (const name of readdirSync(join(root, 'packages')).sort()) walk(join(root, 'packages', name));
  hash.update(readFileSync(join(root, 'package.json')));
  return hash.digest('hex').slice(0, 24);
}

/**
 * {@link packWorkspace} once for the same files, not once per test file: test/pack.test.ts and
 * test/readme-packed.test.ts each install from the same tarballs, packed (after a build when a
 * dist is older than its source) into node_modules/.cache/holdfast-packed/<hash of
 * {@link packInputs}>. A change to any package file packs again. Written to a folder of its own
 * and renamed into place whole: a run killed while packing leaves no half a cache.
 */
export function packedWorkspace(): Packed {
  const started = Date.now();
  buildIfNeeded();
  const builtAt = Date.now();
  const cache = join(root, 'node_modules', '.cache', 'holdfast-packed');
  const dir = join(cache, packInputs());
  const tarball = tarballsIn(dir);
  if ([...tarball.values()].every((file) => existsSync(file))) {
    return { tarball, buildMs: builtAt - started, packMs: Date.now() - builtAt, cached: true };
  }
  mkdirSync(cache, { recursive: true });
  // Earlier packs, of files that changed since, and packings a killed run left: not needed again.
  for (const old of readdirSync(cache)) {
    const stale = !old.startsWith('.') || Date.now() - statSync(join(cache, old)).mtimeMs > 15 * 60_000;
    if (stale) rmSync(join(cache, old), { recursive: true, force: true });
  }
  const fresh = mkdtempSync(join(cache, '.packing-'));
  packWorkspace(fresh);
  try {
    renameSync(fresh, dir);
  } catch {
    rmSync(fresh, { recursive: true, force: true }); // another test file packed the same files at once
  }
  return { tarball, buildMs: builtAt - started, packMs: Date.now() - builtAt, cached: false };
}

/** Package name -> where `pnpm pack` puts its tarball in `dir`. */
function tarballsIn(dir: string): Map<string, string> {
  return new Map(
    workspacePackages.map((pkg) => [
      pkg.manifest.name,
      join(dir, `${pkg.manifest.name.replace('@', '').replace('/', '-')}-${pkg.manifest.version}.tgz`),
    ]),
  );
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

/**
 * Deletes a scratch folder of installed projects without waiting for it: thousands of files in
 * their node_modules took rmSync 66 s at the end of test/readme-packed.test.ts on a loaded
 * machine, time in which the next test file could run. A detached `rm -rf` deletes it while the
 * run goes on (vitest runs one file at a time on two cores: the other core has time for it); where
 * there is no rm, rmSync does it at once.
 */
export function removeLater(dir: string): void {
  const now = () => rmSync(dir, { recursive: true, force: true });
  if (process.platform === 'win32') {
    now();
    return;
  }
  const rm = spawn('rm', ['-rf', dir], { detached: true, stdio: 'ignore' });
  rm.once('error', now);
  rm.unref();
}
