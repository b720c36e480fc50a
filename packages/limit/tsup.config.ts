import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts', 'src/redis.ts', 'src/express.ts', 'src/fastify.ts'],
  format: ['esm', 'cjs'],
  dts: true,
});
