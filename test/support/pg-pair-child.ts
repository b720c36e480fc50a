// Starts a pair and never stops it: a test file whose afterAll did not run (its beforeAll timed
// out while the pair was still starting), ended as Vitest ends its workers, with SIGTERM.
import { startPgPair } from './postgres.js';

const pair = await startPgPair();
const dir = (pair.primary as unknown as { dir: string }).dir;
process.stdout.write(`${JSON.stringify({ dir, replica: (pair.replica as unknown as { dir: string }).dir })}\n`);
setInterval(() => {}, 60_000);
