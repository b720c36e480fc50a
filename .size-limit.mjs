// Size budgets: each package lists its entries and limits in its own package.json ("size-limit").
// Each entry is the built ESM file, bundled by esbuild for Node, minified, brotli-compressed.
// Dependencies, peers and other @holdfast/* packages are left out: the figure is the code the
// package itself adds (zod, opossum and the rest are shared by every package that uses them, and
// counting them in each budget would hide a regression in our own code behind theirs).
import { readdirSync, readFileSync } from 'node:fs';

const root = new URL('.', import.meta.url).pathname;

export default readdirSync(`${root}packages`)
  .sort()
  .flatMap((dir) => {
    const manifest = JSON.parse(readFileSync(`${root}packages/${dir}/package.json`, 'utf8'));
    const external = Object.keys({ ...manifest.dependencies, ...manifest.peerDependencies });
    return (manifest['size-limit'] ?? []).map((check) => ({
      name: check.name ?? manifest.name,
      path: `packages/${dir}/${check.path}`,
      limit: check.limit,
      ignore: external,
      modifyEsbuildConfig: (config) => ({ ...config, platform: 'node', format: 'esm', logLevel: 'error' }),
    }));
  });
