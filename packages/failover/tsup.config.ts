import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts', 'src/pg.ts', 'src/ioredis.ts'],
  format: ['esm', 'cjs'],
  dts: true,
});
