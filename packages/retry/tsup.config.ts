import { join } from 'node:path';
import { defineConfig, type Options } from 'tsup';
import { cjsDataExports } from '../../scripts/tsup-shared.js';

type EsbuildPlugin = NonNullable<Options['esbuildPlugins']>[number];

/**
 * p-retry is ESM only. The ESM build imports it statically (src/p-retry.ts); the CommonJS build
 * gets src/p-retry-cjs.ts, which loads it with a dynamic import(): Node 20 before 20.19 cannot
 * require() an ES module.
 */
const pRetryForCjs: EsbuildPlugin = {
  name: 'holdfast:p-retry-cjs',
  setup(build) {
    if (build.initialOptions.format !== 'cjs') return;
    build.onResolve({ filter: /^\.\/p-retry\.js$/ }, (args) => ({ path: join(args.resolveDir, 'p-retry-cjs.ts') }));
  },
};

export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  plugins: [cjsDataExports],
  esbuildPlugins: [pRetryForCjs],
});
