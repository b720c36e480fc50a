// Packs every publishable package as npm would publish it, then checks the tarball with
// publint --strict and @arethetypeswrong/cli (node10, node16 and bundler). Run after `pnpm build`.
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const out = join(root, '.pack');
rmSync(out, { recursive: true, force: true });
mkdirSync(out);

const bin = (name) => join(root, 'node_modules', '.bin', name);
const pnpm = process.env.npm_execpath?.includes('pnpm') ? [process.execPath, process.env.npm_execpath] : ['pnpm'];

/** Runs a command to its end: whether it exited 0, and what it printed. */
function run(cmd, args, cwd) {
  return new Promise((done) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => {
      output += chunk;
    });
    child.stderr.on('data', (chunk) => {
      output += chunk;
    });
    child.once('error', (error) => done({ ok: false, output: `${output}${error}`.trim() }));
    child.once('close', (code) => done({ ok: code === 0, output: output.trim() }));
  });
}

/** Packs one package and checks its tarball: one line a check, and what failed. */
async function check(name) {
  const dir = join(root, 'packages', name);
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const packed = await run(pnpm[0], [...pnpm.slice(1), 'pack', '--pack-destination', out], dir);
  const tarball = packed.output
    .split('\n')
    .findLast((line) => line.trim().endsWith('.tgz'))
    ?.trim();
  if (!packed.ok || !tarball) return { lines: [], failures: [`${manifest.name}: pnpm pack failed\n${packed.output}`] };
  // npm packs a LICENSE file whatever `files` says, when the package has one: each must, its
  // manifest says MIT, and a tarball without the text grants nothing.
  const listed = await run('tar', ['-tzf', tarball], root);
  const license = { ok: listed.ok && listed.output.split('\n').includes('package/LICENSE'), output: listed.output };
  const [publint, attw] = await Promise.all([
    run(bin('publint'), ['run', tarball, '--strict'], root),
    // The strict profile resolves under node10 too: subpath types reach it through typesVersions.
    run(bin('attw'), [tarball, '--profile', 'strict', '--format', 'table-flipped', '--no-emoji'], root),
  ]);
  const lines = [];
  const failures = [];
  for (const [what, result] of [
    ['LICENSE in the tarball', license],
    ['publint --strict', publint],
    ['attw --profile strict', attw],
  ]) {
    lines.push(`${result.ok ? 'ok  ' : 'FAIL'} ${manifest.name}: ${what}`);
    if (!result.ok) failures.push(`${manifest.name}: ${what}\n${result.output}`);
  }
  return { lines, failures };
}

// Each package's pack, publint and attw are node processes of their own, one after another they
// took most of a minute on two cores with one idle: as many packages at a time as there are CPUs.
// The report keeps the packages' order.
const names = readdirSync(join(root, 'packages'))
  .sort()
  .filter((name) => !JSON.parse(readFileSync(join(root, 'packages', name, 'package.json'), 'utf8')).private);
const results = new Array(names.length);
let next = 0;
await Promise.all(
  Array.from({ length: Math.min(names.length, Math.max(2, availableParallelism())) }, async () => {
    for (let i = next++; i < names.length; i = next++) results[i] = await check(names[i]);
  }),
);
const failures = [];
for (const result of results) {
  for (const line of result.lines) console.log(line);
  failures.push(...result.failures);
}

if (failures.length > 0) {
  console.error(`\n${failures.join('\n\n')}`);
  process.exit(1);
}
