import { type ChildProcess, type SpawnSyncReturns, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';

/** How a script run by {@link runScript} ended. */
export interface ScriptRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** It was still running after `killAfterMs` and was killed: something held it open. */
  readonly killed: boolean;
}

/**
 * Runs a TypeScript script in a child Node process (the packages from source) and waits for it
 * to exit; past `killAfterMs` it is killed (SIGKILL), and `killed` says so. For tests that a
 * process exits on its own: a live timer or socket holds it until the guard.
 */
export function runScript(script: string, options: { cwd: string; killAfterMs: number }): Promise<ScriptRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--conditions=@holdfast/source', '--import', 'tsx', script], {
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let killed = false;
    child.stdout.on('data', (c) => {
      stdout += c;
    });
    child.stderr.on('data', (c) => {
      stderr += c;
    });
    const guard = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, options.killAfterMs);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(guard);
      resolve({ code, stdout, stderr, killed });
    });
  });
}

/**
 * Runs `code` as an ES module in a child Node process (the packages from source, tsx for
 * TypeScript imports) and waits for it: `env` is added to this process's own, NODE_OPTIONS
 * cleared (vitest's would reach the child).
 */
export function runModuleSync(
  code: string,
  options: { cwd?: string; env?: Record<string, string> } = {},
): SpawnSyncReturns<string> {
  return spawnSync(
    process.execPath,
    ['--conditions=@holdfast/source', '--import', 'tsx', '--input-type=module', '-e', code],
    {
      cwd: options.cwd,
      encoding: 'utf8',
      env: { ...process.env, NODE_OPTIONS: '', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
}

/**
 * Starts a TypeScript service (the packages from source) in a child process that prints
 * `listening <port>` once it listens and `exec <what>` each time its handler runs; `exec` is
 * called with `<what>` for each. Resolves with the port, or rejects if it exits first. The
 * caller kills the child.
 */
export async function startLineService(
  script: string,
  args: readonly string[],
  exec: (what: string) => void,
): Promise<{ readonly child: ChildProcess; readonly port: number }> {
  const child = spawn(process.execPath, ['--conditions=@holdfast/source', '--import', 'tsx', script, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let buffered = '';
  let resolvePort: (port: number) => void = () => {};
  const listening = new Promise<number>((resolve) => {
    resolvePort = resolve;
  });
  child.stdout?.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) {
      const [word, ...rest] = line.split(' ');
      if (word === 'listening') resolvePort(Number(rest[0]));
      if (word === 'exec') exec(rest.join(' '));
    }
  });
  const exited = once(child, 'exit').then(() => {
    throw new Error(`${script} ${args.join(' ')} exited before listening`);
  });
  return { child, port: await Promise.race([listening, exited]) };
}
