import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');

describe('the demo', () => {
  it('runs its scenario, prints the summary, creates no order twice, and exits 0 on its own', async () => {
    const child = spawn(
      process.execPath,
      ['--conditions=@holdfast/source', '--import', 'tsx', 'examples/demo/main.ts'],
      {
        cwd: root,
        env: { ...process.env, DEMO_TRAFFIC_MS: '5000' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stdout.on('data', (c) => {
      out += c;
    });
    child.stderr.on('data', (c) => {
      out += c;
    });
    const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const code = await new Promise<number | null>((done) => child.once('exit', done));
    clearTimeout(killer);
    expect(out).toMatch(/live dashboard at http:\/\/127\.0\.0\.1:\d+\/holdfast/);
    // The summary table, not the progress lines above it.
    const summary = out.slice(out.lastIndexOf('holdfast demo,'));
    const figure = (label: string) =>
      Number(new RegExp(`^\\s+${label.replace(/[()]/g, '\\$&')}\\s+(\\d+)$`, 'm').exec(summary)?.[1]);
    expect(figure('requests sent by clients')).toBeGreaterThan(100);
    expect(figure('orders created')).toBeGreaterThan(10);
    expect(figure('retries')).toBeGreaterThan(0);
    expect(figure('duplicate executions (orders created twice)')).toBe(0);
    expect(code).toBe(0);
  }, 90_000);
});
