import { benchCore } from './core.js';
import { benchRetry } from './retry.js';

const suites: Record<string, () => Promise<void>> = {
  core: benchCore,
  retry: benchRetry,
};

// `pnpm bench` runs every suite; `pnpm bench core` runs one.
const only = process.argv.slice(2);
for (const [name, run] of Object.entries(suites)) {
  if (only.length === 0 || only.includes(name)) await run();
}
