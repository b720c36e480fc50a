/**
 * Debian's Chromium for the browser tests: found at /usr/bin/chromium, installed with apt-get
 * when it is missing and this is root (two test files may ask at once: apt waits for dpkg's
 * lock), else skipped loudly, and never skipped under CI=true.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export const executablePath = '/usr/bin/chromium';

/** Installs Debian's chromium when it is missing and we may; says loudly why not otherwise. */
export function ensureChromium(): boolean {
  if (existsSync(executablePath)) return true;
  const root = process.getuid?.() === 0;
  if (root) {
    console.warn(`${executablePath} is missing: installing Debian's chromium with apt-get (a few minutes)`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const wait = ['-o', 'DPkg::Lock::Timeout=600'];
    execFileSync('apt-get', [...wait, 'update'], { stdio: 'inherit', env, timeout: 300_000 });
    execFileSync('apt-get', [...wait, 'install', '-y', 'chromium'], { stdio: 'inherit', env, timeout: 900_000 });
    return existsSync(executablePath);
  }
  const why = `${executablePath} is missing and this is not root, so it cannot be installed: run "apt-get install -y chromium" as root`;
  if (process.env.CI === 'true') throw new Error(`browser test cannot run: ${why}`);
  console.warn(`\n*** SKIPPING the dashboard browser test: ${why} ***\n`);
  return false;
}
