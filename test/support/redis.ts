import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createServer, Socket } from 'node:net';

/** A redis-server process of a test's own, on a free loopback port. */
export interface RedisServer {
  readonly host: '127.0.0.1';
  readonly port: number;
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  /** Whether the process is running now. */
  readonly running: boolean;
  /** Stops the server cleanly (SIGTERM) and waits for it to exit. */
  stop(): Promise<void>;
  /** Kills the server at once (SIGKILL), as a crash would. */
  kill(): Promise<void>;
  /** Starts it again on the same port, with an empty dataset. */
  restart(): Promise<void>;
  /** Stops answering without closing connections (SIGSTOP): a hung server. `resume()` undoes it. */
  pause(): void;
  resume(): void;
}

const binary = process.env.REDIS_SERVER ?? 'redis-server';
const live = new Set<ChildProcess>();

let availability: boolean | undefined;

/**
 * Whether a redis-server binary can be run here. Without one, tests that need Redis skip with a
 * loud message, except under CI=true, where the missing binary fails the run.
 */
export function redisAvailable(): boolean {
  if (availability === undefined) {
    const probe = spawnSync(binary, ['--version'], { encoding: 'utf8' });
    availability = probe.status === 0;
    if (!availability) {
      const message = `redis-server not found (tried "${binary}"; set REDIS_SERVER to its path, or install it: apt-get install redis-server)`;
      if (process.env.CI === 'true') throw new Error(`${message}. CI=true: tests that need Redis must run.`);
      console.warn(`\n*** SKIPPING REDIS TESTS: ${message} ***\n`);
    }
  }
  return availability;
}

/** Starts `count` redis-server processes, each on its own free loopback port. */
export async function startRedis(count = 1, args: readonly string[] = []): Promise<RedisServer[]> {
  return Promise.all(Array.from({ length: count }, () => startOne(args)));
}

/** Stops every server the harness started that is still running. */
export async function stopAllRedis(): Promise<void> {
  await Promise.all([...live].map((child) => terminate(child, 'SIGKILL')));
}

async function startOne(args: readonly string[]): Promise<RedisServer> {
  let lastError: unknown;
  for (let tries = 0; tries < 5; tries++) {
    const port = await freePort();
    try {
      let child = await launch(port, args);
      const server: RedisServer = {
        host: '127.0.0.1',
        port,
        url: `redis://127.0.0.1:${port}`,
        get running() {
          return child.exitCode === null && child.signalCode === null;
        },
        stop: () => terminate(child, 'SIGTERM'),
        kill: () => terminate(child, 'SIGKILL'),
        async restart() {
          await terminate(child, 'SIGKILL');
          child = await launch(port, args);
        },
        pause: () => void child.kill('SIGSTOP'),
        resume: () => void child.kill('SIGCONT'),
      };
      return server;
    } catch (error) {
      lastError = error; // most likely another process took the port between probe and bind
    }
  }
  throw new Error(`could not start redis-server after 5 tries: ${String(lastError)}`);
}

async function launch(port: number, args: readonly string[]): Promise<ChildProcess> {
  const child = spawn(
    binary,
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--protected-mode',
      'no',
      ...args,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  live.add(child);
  child.once('exit', () => live.delete(child));
  let output = '';
  child.stdout?.on('data', (chunk) => {
    output += chunk;
  });
  child.stderr?.on('data', (chunk) => {
    output += chunk;
  });
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`redis-server on port ${port} exited: ${output.trim()}`);
    if (await answersPing(port)) {
      child.stdout?.removeAllListeners('data');
      child.stderr?.removeAllListeners('data');
      child.stdout?.resume();
      child.stderr?.resume();
      return child;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  await terminate(child, 'SIGKILL');
  throw new Error(`redis-server on port ${port} did not answer PING within 10 s: ${output.trim()}`);
}

async function terminate(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  if (signal !== 'SIGKILL') child.kill('SIGCONT'); // a paused server cannot handle SIGTERM
  child.kill(signal);
  await exited;
}

function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.connect(port, '127.0.0.1', () => socket.write('PING\r\n'));
    socket.once('data', (data) => done(data.toString().startsWith('+PONG')));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

// A test run that dies must not leave servers behind.
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});
