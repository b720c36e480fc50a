// Packs every publishable package as npm would publish it, then checks the tarball with
// publint --strict and @arethetypeswrong/cli (node10, node16 and bundler). Run after `pnpm build`.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const out = join(root, '.pack');
rmSync(out, { recursive: true, force: true });
mkdirSync(out);

const bin = (name) => join(root, 'node_modules', '.bin', name);
const pnpm = process.env.npm_execpath?.includes('pnpm') ? [process.execPath, process.env.npm_execpath] : ['pnpm'];

function run(cmd, args, cwd) {
  const result = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  return { ok: result.status === 0, output: `${result.stdout ?? ''}${result.stderr ?? ''}`.trim() };
}

const failures = [];
for (const name of readdirSync(join(root, 'packages')).sort()) {
  const dir = join(root, 'packages', name);
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  if (manifest.private) continue;
  const packed = run(pnpm[0], [...pnpm.slice(1), 'pack', '--pack-destination', out], dir);
  const tarball = packed.output
    .split('\n')
    .findLast((line) => line.trim().endsWith('.tgz'))
    ?.trim();
  if (!packed.ok || !tarball) {
    failures.push(`${manifest.name}: pnpm pack failed\n${packed.output}`);
    continue;
  }
  const checks = [
    ['publint --strict', run(bin('publint'), ['run', tarball, '--strict'], root)],
    // The strict profile resolves under node10 too: subpath types reach it through typesVersions.
    [
      'attw --profile strict',
      run(bin('attw'), [tarball, '--profile', 'strict', '--format', 'table-flipped', '--no-emoji'], root),
    ],
  ];
  for (const [check, result] of checks) {
    console.log(`${result.ok ? 'ok  ' : 'FAIL'} ${manifest.name}: ${check}`);
    if (!result.ok) failures.push(`${manifest.name}: ${check}\n${result.output}`);
  }
}

if (failures.length > 0) {
  console.error(`\n${failures.join('\n\n')}`);
  process.exit(1);
}
