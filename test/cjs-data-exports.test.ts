import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { dataExports } from '../scripts/tsup-shared.js';
import { workspacePackages } from './support/packed.js';

// Every CommonJS entry of every package: module.exports in V8's fast mode (plain data properties,
// not esbuild's getters, which V8 keeps as a dictionary that each `import_core.X` of another
// package's build reads through), with the ESM build's names, the `__esModule` marker, and the
// names Node's cjs-module-lexer finds for an ESM import of the CommonJS file. Needs `pnpm build`.

interface Entry {
  readonly cjs: string;
  readonly esm: string;
}

const entries: Entry[] = workspacePackages.flatMap((pkg) =>
  pkg.subpaths.map((subpath) => {
    const target = (pkg.manifest.exports as Record<string, { require?: string; import?: string }>)[subpath];
    const file = (conditions: unknown): string => {
      // { types, default } under each condition, or a plain path.
      const path = typeof conditions === 'string' ? conditions : (conditions as { default: string }).default;
      return join(pkg.dir, path);
    };
    return { cjs: file(target?.require), esm: file(target?.import) };
  }),
);

/**
 * Names declared `export let` or `export var` in any package's source: bindings that may change
 * after load. Where an entry exports one, it must stay a getter, whatever form its assignment
 * takes (the build finds `x = ...`, `x += ...`, `x++`; not a destructuring assignment).
 */
const mutable = new Set(
  workspacePackages.flatMap((pkg) =>
    (readdirSync(join(pkg.dir, 'src'), { recursive: true, encoding: 'utf8' }) as string[])
      .filter((file) => file.endsWith('.ts'))
      .flatMap((file) => [
        ...readFileSync(join(pkg.dir, 'src', file), 'utf8').matchAll(/^export (?:let|var) ([\w$]+)/gm),
      ])
      .map((m) => m[1] as string),
  ),
);

/** What the child reports of one entry. */
interface Shape {
  readonly cjs: string;
  readonly fast: boolean;
  readonly frozen: boolean;
  readonly esModule: PropertyDescriptor | undefined;
  readonly accessors: string[];
  readonly keys: string[];
  readonly esmKeys: string[];
  readonly lexerKeys: string[];
  readonly same: boolean;
  /** Exports read as undefined once loaded: a binding set later (or in a require() cycle) that a copy froze. */
  readonly unset: string[];
}

// Runs in a child: %HasFastProperties needs --allow-natives-syntax, which a vitest worker lacks.
const probe = `
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const out = [];
for (const { cjs, esm } of JSON.parse(process.argv[1])) {
  const m = require(cjs);
  const viaImport = await import(cjs);
  const keys = Object.keys(m);
  out.push({
    cjs,
    fast: %HasFastProperties(m),
    frozen: Object.isFrozen(m),
    esModule: Object.getOwnPropertyDescriptor(m, '__esModule'),
    accessors: Object.getOwnPropertyNames(m).filter((k) => Object.getOwnPropertyDescriptor(m, k).get),
    keys: keys.sort(),
    esmKeys: Object.keys(await import(esm)).sort(),
    // Newer Node adds 'module.exports' beside 'default' to the namespace of a CommonJS file.
    lexerKeys: Object.keys(viaImport).filter((k) => k !== 'default' && k !== 'module.exports').sort(),
    unset: keys.filter((k) => m[k] === undefined),
    same: keys.every((k) => viaImport[k] === m[k]),
  });
}
console.log(JSON.stringify(out));
`;

function shapes(list: readonly Entry[]): Shape[] {
  const child = spawnSync(
    process.execPath,
    ['--allow-natives-syntax', '--input-type=module', '-e', probe, JSON.stringify(list)],
    { encoding: 'utf8', timeout: 30_000 },
  );
  expect(child.stderr).toBe('');
  expect(child.status).toBe(0);
  return JSON.parse(child.stdout) as Shape[];
}

describe('the CommonJS builds', () => {
  it('finds the built entries (run `pnpm build` first)', () => {
    expect(entries.length).toBeGreaterThanOrEqual(12);
    expect(entries.filter((e) => !existsSync(e.cjs) || !existsSync(e.esm))).toEqual([]);
  });

  it('give module.exports as frozen data properties in fast mode, with the ESM names', () => {
    const all = shapes(entries);
    const seen = all.map((s) => ({
      cjs: s.cjs,
      fast: s.fast,
      frozen: s.frozen,
      accessors: s.accessors,
      esModule: s.esModule,
      keys: s.keys,
      lexer: s.lexerKeys,
      same: s.same,
      unset: s.unset,
    }));
    const wanted = all.map((s) => ({
      cjs: s.cjs,
      fast: true,
      frozen: true,
      accessors: s.keys.filter((k) => mutable.has(k)),
      esModule: { value: true, writable: false, enumerable: false, configurable: false },
      keys: s.esmKeys,
      lexer: s.esmKeys,
      same: true,
      unset: [],
    }));
    expect(seen).toEqual(wanted);
  });

  it("finds core's `export let carry` in the source scan the getter check above relies on", () => {
    expect(mutable.has('carry')).toBe(true);
  });

  it("keep core's pipeline handing the call's options on (carry, set by a static block at load)", () => {
    const core = entries.find((e) => e.cjs.endsWith(join('core', 'dist', 'index.cjs')));
    const script = `
      const core = require(${JSON.stringify(core?.cjs)});
      const seen = [];
      const peek = { name: 'peek', execute: (fn, options) => { seen.push(core.CallScope.given(options)); return fn(options); } };
      core.pipeline(core.timeout(60_000), peek).execute(() => 1, { key: 'user-1' })
        .then((value) => console.log(JSON.stringify({ value, seen })));
    `;
    const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 });
    expect(child.stderr).toBe('');
    expect(JSON.parse(child.stdout)).toEqual({ value: 1, seen: [{ key: 'user-1' }] });
  });
});

describe('dataExports', () => {
  /** esbuild's CommonJS bundle of `source`, as tsup makes it, after {@link dataExports}. */
  async function bundled(source: string) {
    const out = await build({
      stdin: { contents: source, loader: 'ts', resolveDir: import.meta.dirname },
      bundle: true,
      format: 'cjs',
      platform: 'node',
      target: 'node20',
      write: false,
    });
    const text = out.outputFiles[0]?.text ?? '';
    return dataExports(text, 'stdin.cjs');
  }

  /** Runs a CommonJS text as a module and returns its module.exports. */
  function load(code: string): Record<string, unknown> {
    const module = { exports: {} as Record<string, unknown> };
    new Function('module', 'exports', 'require', code)(module, module.exports, () => ({}));
    return module.exports;
  }

  it('keeps an export assigned after its declaration a live getter, the rest data', async () => {
    const out = await bundled(`
      export let current = 'first';
      export let later: string | undefined;
      export const fixed = { n: 1 };
      export function move(to: string) { current = to; }
      class Holder { static { later = 'set by a static block'; } }
      export { Holder as Renamed };
    `);
    expect(out.live).toEqual(['current', 'later']);
    const m = load(out.code) as { current: string; later: string; move: (to: string) => void };
    expect(m.later).toBe('set by a static block');
    m.move('second');
    expect(m.current).toBe('second');
    expect(Object.getOwnPropertyDescriptor(m, 'fixed')).toMatchObject({ writable: false, enumerable: true });
    expect(Object.getOwnPropertyDescriptor(m, 'current')?.get).toBeTypeOf('function');
    expect(Object.keys(m)).toEqual(['Renamed', 'current', 'fixed', 'later', 'move']);
  });

  it('leaves a file without exports as it is, and refuses an export * it cannot list', async () => {
    const plain = 'console.log(1);\n';
    expect(dataExports(plain)).toEqual({ code: plain, live: [] });
    await expect(bundled(`export * from 'node:path';`)).rejects.toThrow(/export \* is not supported/);
  });
});
