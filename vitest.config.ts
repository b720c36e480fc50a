import { readdirSync } from 'node:fs';
import { defineConfig } from 'vitest/config';

// Workspace packages read each other's source through this export condition: no build needed.
const conditions = ['@holdfast/source', 'node', 'import', 'module', 'default'];

const packages = readdirSync(new URL('./packages', import.meta.url), { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name);

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: ['@holdfast/source'] } },
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
