import { defineConfig } from 'tsup';
import { cjsDataExports } from '../../scripts/tsup-shared.js';

export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  plugins: [cjsDataExports],
});
