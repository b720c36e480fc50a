import { readdirSync } from 'node:fs';
import { transform } from 'esbuild';
import { defineConfig, type Plugin } from 'vitest/config';

// Workspace packages read each other's source through this export condition: no build needed.
const conditions = ['@holdfast/source', 'node', 'import', 'module', 'default'];

const packages = readdirSync(new URL('./packages', import.meta.url), { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name);

// Vite's own TypeScript transform does not lower TC39 (TypeScript 5) decorators yet; esbuild does.
const decorators: Plugin = {
  name: 'holdfast:tc39-decorators',
  enforce: 'pre',
  async transform(code, id) {
    if (!id.endsWith('.ts') || !/^\s*@[A-Za-z]/m.test(code)) return undefined;
    const out = await transform(code, { loader: 'ts', target: 'es2022', sourcefile: id, sourcemap: true });
    return { code: out.code, map: out.map };
  },
};

export default defineConfig({
  plugins: [decorators],
  resolve: { conditions },
  // Vitest passes ssr.resolve.conditions to Node as --conditions, where they reach require() too:
  // 'import' there makes a CommonJS require() load a dual package's ESM file (express breaks on is-promise).
  ssr: { resolve: { conditions: ['@holdfast/source', 'node'], externalConditions: ['@holdfast/source'] } },
  test: {
    projects: [
      ...packages.map((name) => ({
        extends: true as const,
        test: { name, root: `packages/${name}`, include: ['test/**/*.test.ts'] },
      })),
      {
        extends: true as const,
        test: {
          name: 'integration',
          root: 'test',
          include: ['**/*.test.ts'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
});
