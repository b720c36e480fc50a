#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { HoldfastError } from '@holdfast/core';
import { scoreSeries } from './series.js';

const usage = `usage: holdfast-anomaly score <metrics.csv | -> [--detector baseline|forest] [--json]

Scores a CSV of metrics (a header row; a timestamp/time/date column is kept, every other column
is a metric) one row at a time, as a live detector would, and prints the alerts.`;

/** Runs the command line; returns the exit code. */
export function main(argv: readonly string[], out: (line: string) => void, err: (line: string) => void): number {
  const [command, ...rest] = argv;
  if (command !== 'score') {
    err(usage);
    return command === '--help' || command === '-h' ? 0 : 2;
  }
  const fail = (message: string) => {
    err(`holdfast-anomaly: ${message}\n${usage}`);
    return 2;
  };
  let file: string | undefined;
  let detector: 'baseline' | 'forest' | undefined;
  let json = false;
  // Options before or after the file, as most commands take them; `--detector=forest` too.
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i] as string;
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? arg.split(/=(.*)/s, 2) : [arg, undefined];
    if (flag === '--json' && inline === undefined) json = true;
    else if (flag === '--detector') {
      const value = inline ?? rest[++i];
      if (value !== 'baseline' && value !== 'forest') {
        return fail(
          `--detector must be baseline or forest (got ${value === undefined ? 'nothing' : JSON.stringify(value)})`,
        );
      }
      detector = value;
    } else if (arg === '-h' || arg === '--help') {
      err(usage);
      return 0;
    } else if (arg.startsWith('-') && arg !== '-') return fail(`unknown option ${arg}`);
    else if (file !== undefined)
      return fail(`one file at a time (got ${JSON.stringify(arg)} after ${JSON.stringify(file)})`);
    else file = arg;
  }
  if (file === undefined) return fail('no file to score (a path, or - for stdin)');
  let text: string;
  try {
    text = decode(readFileSync(file === '-' ? 0 : file));
  } catch (error) {
    err(`holdfast-anomaly: cannot read ${file}: ${(error as Error).message}`);
    return 2;
  }
  try {
    const result = scoreSeries(text, detector === undefined ? {} : { detector });
    if (json) out(JSON.stringify({ columns: result.columns, anomalies: result.anomalies }));
    else {
      out(
        `${result.points.length} rows, ${result.columns.length} metrics (${result.columns.join(', ')}), ${result.anomalies.length} anomalies`,
      );
      for (const a of result.anomalies) {
        out(
          `${a.timestamp ?? `row ${a.index}`}\t${a.metric}=${a.value}\texpected ${round(a.expected)}\tscore ${a.score.toFixed(2)}`,
        );
      }
    }
    return 0;
  } catch (error) {
    if (!(error instanceof HoldfastError)) throw error;
    err(`holdfast-anomaly: ${error.message}`);
    return 1;
  }
}

/**
 * The text of a file as its byte order mark says: UTF-8 (with or without one), UTF-16 LE or BE, as
 * Excel and PowerShell save a CSV. UTF-32 is refused by name; UTF-16 without a mark is refused
 * by the parser (its NULs), also by name.
 */
function decode(bytes: Buffer): string {
  const [a, b, c, d] = bytes;
  if ((a === 0xff && b === 0xfe && c === 0 && d === 0) || (a === 0 && b === 0 && c === 0xfe && d === 0xff)) {
    throw new Error('it is UTF-32, which is not read: save it as UTF-8 or UTF-16');
  }
  if (a === 0xef && b === 0xbb && c === 0xbf) return bytes.toString('utf8', 3);
  if (a === 0xff && b === 0xfe) return bytes.toString('utf16le', 2);
  // UTF-16 BE: swapped to LE, a last odd byte dropped (swap16 needs pairs).
  if (a === 0xfe && b === 0xff)
    return Buffer.from(bytes.subarray(2, bytes.length - (bytes.length % 2)))
      .swap16()
      .toString('utf16le');
  return bytes.toString('utf8');
}

function round(x: number): string {
  return Number.isFinite(x) ? String(Math.round(x * 1000) / 1000) : 'n/a';
}

// Run only as a program, not when a test imports main().
if (process.argv[1] !== undefined && /holdfast-anomaly|cli\.(js|ts|cjs)$/.test(process.argv[1])) {
  // `holdfast-anomaly score m.csv | head`: the reader has gone, so has the point of writing. Exit
  // quietly, as a Unix filter does, instead of dying on an unhandled EPIPE with a stack trace.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    process.exit();
  });
  process.exitCode = main(
    process.argv.slice(2),
    (line) => process.stdout.write(`${line}\n`),
    (line) => process.stderr.write(`${line}\n`),
  );
}
