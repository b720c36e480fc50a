// Prints "N passed, N failed[, N skipped]" from vitest's JSON report; exits 1 when nothing ran.
import { readFileSync } from 'node:fs';

const report = JSON.parse(readFileSync(process.argv[2] ?? 'reports/vitest.json', 'utf8'));
// The slowest files first, so that a CI log shows where its time went (CI has 20 minutes).
const files = (report.testResults ?? [])
  .map((r) => ({
    ms: (r.endTime ?? 0) - (r.startTime ?? 0),
    name: String(r.name ?? '').replace(`${process.cwd()}/`, ''),
  }))
  .sort((a, b) => b.ms - a.ms);
if (files.length > 0) {
  const wall = Math.max(...report.testResults.map((r) => r.endTime ?? 0)) - (report.startTime ?? 0);
  console.log(`slowest test files (of ${files.length}; ${Math.round(wall / 1000)} s from start to last end):`);
  for (const f of files.slice(0, 15)) console.log(`${String(Math.round(f.ms / 1000)).padStart(5)} s  ${f.name}`);
}
const passed = report.numPassedTests ?? 0;
const failed = (report.numFailedTests ?? 0) + (report.numRuntimeErrorTestSuites ?? 0);
const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
console.log(`${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}`);
if (passed + failed === 0) process.exit(1);
