import { type ChildProcess, spawn } from 'node:child_process';

const children = new Set<ChildProcess>();

/**
 * Starts `script` (TypeScript, run from source) in a process of its own; `nextLine` resolves to
 * what it prints next, line by line.
 */
export function startChild(script: string, ...args: string[]) {
  const child = spawn(process.execPath, ['--conditions=@holdfast/source', '--import', 'tsx', script, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let buffered = '';
  const waiting: ((line: string) => void)[] = [];
  const lines: string[] = [];
  child.stdout?.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    for (let at = buffered.indexOf('\n'); at !== -1; at = buffered.indexOf('\n')) {
      const line = buffered.slice(0, at);
      buffered = buffered.slice(at + 1);
      const waiter = waiting.shift();
      if (waiter) waiter(line);
      else lines.push(line);
    }
  });
  const nextLine = () =>
    new Promise<string>((resolve, reject) => {
      const queued = lines.shift();
      if (queued !== undefined) return resolve(queued);
      waiting.push(resolve);
      child.once('exit', (code) => reject(new Error(`worker exited (${code}) before printing a line`)));
    });
  return { child, nextLine };
}

/** Kills (SIGKILL) every child started by {@link startChild} that still runs. */
export function killChildren(): void {
  for (const child of children) child.kill('SIGKILL');
}
