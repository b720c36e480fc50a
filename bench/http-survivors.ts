import { spawn } from 'node:child_process';
import { Agent } from 'node:http';
import { fileURLToPath } from 'node:url';
import { load } from './http-server.js';

// What a server's young collections keep per request: one of bench/http-instructions.ts's
// servers (its `server <kind>` mode; build first) runs in a child process with V8's
// `--trace-gc-nvp`; this process sends WARMUP requests, then REQUESTS more, and sums what each
// young collection during the second batch found alive (`new_space_survived`) and moved to the
// old generation (`promoted`), per request. A bare server keeps next to nothing; a first
// request's record (the store keeps it) is kept by every collection after it. VALGRIND=1 runs the
// server under `valgrind --tool=none`, about 20 times slower, as the instruction counts run it:
// what is kept can depend on how fast requests come. Extra V8 flags: NODE_FLAGS. Run:
// `cd bench && REQUESTS=3000 npx --yes pnpm@10.34.8 run survivors plugin same`.

const WARMUP = Number(process.env.WARMUP ?? 20_000);
const REQUESTS = Number(process.env.REQUESTS ?? 3_000);
const [kind = 'plugin', keys = 'same'] = process.argv.slice(2);
if (keys !== 'same' && keys !== 'fresh')
  throw new Error(`keys: 'same' (replays) or 'fresh' (first requests), not ${keys}`);

const server = [
  '--single-threaded-gc',
  ...(process.env.NODE_FLAGS ?? '').split(' ').filter((flag) => flag !== ''),
  '--trace-gc-nvp',
  '--import',
  'tsx',
  fileURLToPath(new URL('http-instructions.ts', import.meta.url)),
  'server',
  kind,
];
const child =
  process.env.VALGRIND === '1'
    ? spawn('valgrind', ['--tool=none', '--quiet', process.execPath, ...server], {
        stdio: ['ignore', 'pipe', 'inherit'],
      })
    : spawn(process.execPath, server, { stdio: ['ignore', 'pipe', 'inherit'] });
let out = '';
child.stdout.setEncoding('utf8');
const port = await new Promise<number>((resolve, reject) => {
  child.once('exit', (code) => reject(new Error(`the server exited (${code}) before it listened`)));
  child.stdout.on('data', (chunk: string) => {
    out += chunk;
    const listening = /@port (\d+)/.exec(out);
    if (listening) resolve(Number(listening[1]));
  });
});
const agent = new Agent({ keepAlive: true, maxSockets: 1 });
let fresh = 0;
const key = keys === 'same' ? () => 'same-key' : () => `key-${++fresh}`;
try {
  await load(port, WARMUP, key, 1, agent);
  out = '';
  await load(port, REQUESTS, key, 1, agent);
} finally {
  agent.destroy();
  child.kill();
}
await new Promise((resolve) => child.once('exit', resolve));
const field = (line: string, name: string) => Number(new RegExp(` ${name}=(\\d+)`).exec(line)?.[1] ?? 0);
const young = out.split('\n').filter((line) => line.includes(' gc=s '));
const survived = young.reduce((sum, line) => sum + field(line, 'new_space_survived'), 0);
const promoted = young.reduce((sum, line) => sum + field(line, 'promoted'), 0);
const full = out.split('\n').filter((line) => / gc=m/.test(line)).length;
console.log(
  `${kind} ${keys}: ${young.length} young collections over ${REQUESTS} requests; survived ${Math.round(survived / REQUESTS)} B/request, promoted ${Math.round(promoted / REQUESTS)} B/request; ${full} full collections`,
);
