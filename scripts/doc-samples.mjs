// The ```ts samples of the docs and READMEs, as modules a compiler and Node can check.
// Each block becomes .doc-samples/<file>-L<line>.ts (line 1 of the module is the line after the
// fence, so an error at module line n is at markdown line fence + n). Info strings: `ts` is
// type-checked, `ts run` also runs, `ts no-check` is neither. Other languages are not TypeScript.
// Run directly (`node scripts/doc-samples.mjs`) for the same check as test/docs-samples.test.ts.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, relative, resolve } from 'node:path';

export const root = resolve(import.meta.dirname, '..');
export const outDir = join(root, '.doc-samples');

/** Every markdown file whose samples are checked, relative to the root. */
export function markdownFiles() {
  const files = ['README.md', 'examples/README.md'];
  for (const name of readdirSync(join(root, 'packages')).sort()) files.push(`packages/${name}/README.md`);
  const walk = (dir) => {
    for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory() && path !== 'docs/api') walk(path);
      else if (entry.isFile() && entry.name.endsWith('.md')) files.push(path);
    }
  };
  if (existsSync(join(root, 'docs'))) walk('docs');
  return files.filter((file) => existsSync(join(root, file)));
}

/** The fenced blocks of one markdown file: language, the words after it, and where it starts. */
export function fencedBlocks(file) {
  const lines = readFileSync(join(root, file), 'utf8').split('\n');
  const blocks = [];
  let open = null;
  lines.forEach((line, index) => {
    const fence = /^(\s*)(`{3,}|~{3,})(.*)$/.exec(line);
    if (open) {
      if (fence && fence[2][0] === open.marker[0] && fence[2].length >= open.marker.length && !fence[3].trim()) {
        blocks.push({ ...open, code: open.body.join('\n') });
        open = null;
      } else open.body.push(line.slice(Math.min(open.indent, line.length - line.trimStart().length)));
      return;
    }
    if (!fence) return;
    const [lang = '', ...flags] = fence[3].trim().split(/\s+/);
    open = { file, line: index + 1, lang, flags, marker: fence[2], indent: fence[1].length, body: [] };
  });
  if (open) throw new Error(`${file}:${open.line}: a code fence that is never closed`);
  return blocks;
}

/** The TypeScript samples of every checked file; `skipped` are those marked no-check. */
export function samples() {
  const all = markdownFiles()
    .flatMap(fencedBlocks)
    .filter((b) => ['ts', 'typescript'].includes(b.lang));
  const checked = all.filter((b) => !b.flags.includes('no-check'));
  return {
    checked: checked.map((b) => ({
      ...b,
      run: b.flags.includes('run'),
      module: `${b.file.replace(/\.md$/, '').replace(/[^A-Za-z0-9]+/g, '-')}-L${b.line}.ts`,
    })),
    skipped: all.filter((b) => b.flags.includes('no-check')),
  };
}

/** The words after `npm install` on every line of a markdown file's shell fences, comments and flags left out. */
export function installLines(file) {
  return fencedBlocks(file)
    .filter((b) => ['sh', 'bash', 'shell'].includes(b.lang))
    .flatMap((b) => b.code.split('\n'))
    .map((line) => line.replace(/#.*$/, '').trim().split(/\s+/))
    .filter((words) => words[0] === 'npm' && (words[1] === 'install' || words[1] === 'i'))
    .map((words) => words.slice(2).filter((w) => !w.startsWith('-')));
}

/** The packages a sample imports (`import ... from 'x'`, `import 'x'`, `import('x')`), by package name. */
export function importedPackages(code) {
  const specifiers = code.matchAll(
    /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|\bimport\s*\(?\s*['"]([^'"]+)['"]/gm,
  );
  const names = new Set();
  for (const m of specifiers) {
    const specifier = m[1] ?? m[2] ?? '';
    if (specifier.startsWith('.') || specifier.startsWith('/')) continue;
    names.add(packageOf(specifier));
  }
  return [...names].sort();
}

/** The package an import specifier names: `@scope/name` or `name`, without a subpath. */
export function packageOf(specifier) {
  return specifier
    .split('/')
    .slice(0, specifier.startsWith('@') ? 2 : 1)
    .join('/');
}

/** Writes the samples as modules, with a tsconfig that reads @holdfast/* from source. */
export function writeSamples(list) {
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  for (const s of list) writeFileSync(join(outDir, s.module), `${s.code}\nexport {};\n`);
  writeFileSync(
    join(outDir, 'tsconfig.json'),
    JSON.stringify({ extends: '../tsconfig.base.json', include: ['*.ts'] }, null, 2),
  );
}

/**
 * One tsc program over every sample; each error is given at its markdown file and line. A child
 * process, not spawnSync: the caller's event loop goes on (test/docs-samples.test.ts runs the
 * samples meanwhile, where a blocked worker left one of two cores idle for the whole tsc run).
 */
export function typecheck(list) {
  const byModule = new Map(list.map((s) => [s.module, s]));
  const tsc = spawn(
    process.execPath,
    [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(outDir, 'tsconfig.json'), '--pretty', 'false'],
    { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  tsc.stdout.on('data', (d) => (output += d));
  tsc.stderr.on('data', (d) => (output += d));
  return new Promise((done) => {
    tsc.on('error', (error) => done([`tsc did not start: ${error.message}`]));
    tsc.on('close', (status, signal) => {
      const errors = [];
      for (const line of output.split('\n')) {
        if (!line.trim()) continue;
        const m = /^(.*?)\((\d+),(\d+)\): (.*)$/.exec(line);
        const sample = m && byModule.get(relative(outDir, resolve(root, m[1])));
        if (sample) errors.push(`${sample.file}:${sample.line + Number(m[2])}:${m[3]} ${m[4]}`);
        else if (/^\s/.test(line) && errors.length > 0) errors[errors.length - 1] += `\n${line}`;
        else errors.push(line);
      }
      if (status !== 0 && errors.length === 0) errors.push(`tsc exited with ${status ?? signal}`);
      done(errors);
    });
  });
}

/** Runs one sample with Node, workspace packages read from source; resolves to its outcome. */
export function runSample(sample, timeoutMs = 20_000) {
  return new Promise((done) => {
    const child = spawn(
      process.execPath,
      ['--conditions=@holdfast/source', '--import', 'tsx', join(outDir, sample.module)],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } },
    );
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const timedOut = signal === 'SIGKILL';
      done({ ok: code === 0, code, timedOut, output: output.trim() });
    });
  });
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  const { checked, skipped } = samples();
  writeSamples(checked);
  const started = Date.now();
  const errors = await typecheck(checked);
  console.log(`${checked.length} samples type-checked in ${Date.now() - started} ms (${skipped.length} no-check)`);
  for (const e of errors) console.error(e);
  // As many at a time as there are CPUs: each is a Node process of its own.
  const queue = checked.filter((s) => s.run);
  const runs = [];
  const worker = async () => {
    for (let s = queue.shift(); s; s = queue.shift()) runs.push({ s, r: await runSample(s) });
  };
  await Promise.all(Array.from({ length: availableParallelism() }, worker));
  for (const { s, r } of runs) {
    console.log(`${r.ok ? 'ok  ' : 'FAIL'} run ${s.file}:${s.line}${r.timedOut ? ' (timed out)' : ''}`);
    if (!r.ok) console.error(r.output);
  }
  if (errors.length > 0 || runs.some(({ r }) => !r.ok)) process.exit(1);
}
