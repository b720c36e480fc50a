import { defineConfig } from 'tsup';
import { cjsDataExports } from '../../scripts/tsup-shared.js';

export default defineConfig({
  entry: ['src/index.ts', 'src/cli.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  plugins: [cjsDataExports],
});
