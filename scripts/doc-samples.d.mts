// Types of doc-samples.mjs, for test/docs-samples.test.ts.
export interface Block {
  file: string;
  line: number;
  lang: string;
  flags: string[];
  code: string;
}
export interface Sample extends Block {
  run: boolean;
  module: string;
}
export interface RunResult {
  ok: boolean;
  code: number | null;
  timedOut: boolean;
  output: string;
}
export const root: string;
export const outDir: string;
export function markdownFiles(): string[];
export function fencedBlocks(file: string): Block[];
export function installLines(file: string): string[][];
export function importedPackages(code: string): string[];
export function packageOf(specifier: string): string;
export function samples(): { checked: Sample[]; skipped: Block[] };
export function writeSamples(list: Sample[]): void;
export function typecheck(list: Sample[]): Promise<string[]>;
export function runSample(sample: Sample, timeoutMs?: number): Promise<RunResult>;
