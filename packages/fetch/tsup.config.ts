import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts', 'src/decorators.ts'],
  format: ['esm', 'cjs'],
  dts: true,
});
