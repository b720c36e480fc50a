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

// Files whose assertions count events inside a time window (a re-ejection within 2 s, a
// million keys through a store): under the whole suite's parallel load on two cores they can
// miss their windows. They run after everything else, one file at a time.
const timing = [
  'packages/anomaly/test/creep-http.test.ts',
  'packages/failover/test/http.test.ts',
  'packages/idempotency/test/memory-store.test.ts',
];

export default defineConfig({
  plugins: [decorators],
  resolve: { conditions },
  // Vitest passes ssr.resolve.conditions to Node as --conditions, where they reach require() too:
  // 'import' there makes a CommonJS require() load a dual package's ESM file (express breaks on is-promise).
  ssr: { resolve: { conditions: ['@holdfast/source', 'node'], externalConditions: ['@holdfast/source'] } },
  test: {
    // Most files wait on servers, child processes and timers, not on the CPU: two at a time on
    // the two cores CI has (Vitest's default there is one). The timing project stays at one.
    maxWorkers: 2,
    projects: [
      ...packages.map((name) => ({
        extends: true as const,
        test: {
          name,
          root: `packages/${name}`,
          include: ['test/**/*.test.ts'],
          // Property tests of a thousand runs take 1-3 s alone; with other work on both cores,
          // past Vitest's 5 s default. A test that hangs still fails, later.
          testTimeout: 30_000,
          exclude: timing
            .filter((f) => f.startsWith(`packages/${name}/`))
            .map((f) => f.slice(`packages/${name}/`.length)),
        },
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
      {
        extends: true as const,
        test: {
          name: 'timing',
          include: timing,
          sequence: { groupOrder: 1 },
          maxWorkers: 1,
        },
      },
    ],
  },
});
