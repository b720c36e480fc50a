import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..', '..');

/** Runs the workspace's pinned pnpm: the one running us, else `npx pnpm@<packageManager>`. */
export function pnpm(args: readonly string[], cwd: string): string {
  const execpath = process.env.npm_execpath;
  if (execpath?.includes('pnpm')) return execFileSync(process.execPath, [execpath, ...args], { cwd, encoding: 'utf8' });
  const { packageManager } = JSON.parse(readFileSync(resolve(root, 'package.json'), 'utf8')) as {
    packageManager: string;
  };
  return execFileSync('npx', ['--yes', packageManager, ...args], { cwd, encoding: 'utf8' });
}
