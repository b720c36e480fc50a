// Writes each package's measured size into the "## Size" section of its README (appended when
// missing). Run after `pnpm build`: node scripts/size-readme.mjs
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';

const root = new URL('..', import.meta.url).pathname;
const results = JSON.parse(execFileSync(`${root}node_modules/.bin/size-limit`, ['--json'], { cwd: root }));
const kB = (bytes) => `${Number((bytes / 1000).toFixed(2))} kB`;

for (const dir of readdirSync(`${root}packages`)) {
  const manifest = JSON.parse(readFileSync(`${root}packages/${dir}/package.json`, 'utf8'));
  const own = results.filter((r) => r.name === manifest.name || r.name.startsWith(`${manifest.name}/`));
  if (own.length === 0) continue;
  const figures = own
    .map(
      (r) =>
        `${r.name === manifest.name ? '' : `\`${r.name.slice(manifest.name.length)}\` `}${kB(r.size)} (budget ${kB(r.sizeLimit)})`,
    )
    .join(', ');
  const line = `${figures}: ESM, minified and brotli-compressed, dependencies excluded. \`npx --yes pnpm@10.34.8 run size\`, after a build.`;
  const file = `${root}packages/${dir}/README.md`;
  const text = readFileSync(file, 'utf8');
  const section = `## Size\n\n${line}\n`;
  const next = /^## Size\n\n.*\n/m.test(text)
    ? text.replace(/^## Size\n\n.*\n/m, section)
    : `${text.trimEnd()}\n\n${section}`;
  writeFileSync(file, next);
}
