/**
 * Review: an objective judged on no requests. A driver that bails out before sending (a bug, a
 * client that cannot connect and swallows its error), or a final window that holds no request (the
 * restore step at the load's end), measured nothing: the objective must be missed, not passed on
 * zero of zero, or a CI gate goes green on a drill that never looked.
 */
import { describe, expect, it } from 'vitest';
import { assertDrill, DrillFailedError, drill } from '../src/index.js';

describe('drill review: objectives with no requests to judge them by', () => {
  it('a driven load that sends nothing: every load objective missed, the drill does not pass', async () => {
    const result = await drill({
      name: 'driver that never sends',
      print: false,
      load: {
        duration: 100,
        drive: async () => {
          // Its client could not be made; the error was logged and swallowed.
        },
      },
      objectives: { maxFailedShare: 0, maxP99: 500, maxRecovery: 1_000 },
    });
    expect(result.load.sent).toBe(0);
    expect(result.objectives.map((o) => [o.objective, o.passed])).toEqual([
      ['maxFailedShare', false],
      ['maxP99', false],
      ['maxRecovery', false],
    ]);
    expect(result.passed, 'a drill that sent no request').toBe(false);
    expect(result.report).toMatch(/MISS {2}failed share: no requests/);
    expect(() => assertDrill(result)).toThrow(DrillFailedError);
    expect(() => assertDrill(result)).toThrow(/maxFailedShare no requests/);
  });

  it('a restore step at the load end leaves the final window empty: maxFinalFailedShare is missed, not passed', async () => {
    let down = false;
    const result = await drill({
      name: 'down until the very end',
      print: false,
      load: { request: async () => !down, rate: 100, duration: 400 },
      steps: [
        { at: 100, name: 'kill', run: () => void (down = true) },
        { at: 400, name: 'restore', run: () => void (down = false) },
      ],
      objectives: { maxFinalFailedShare: 0 },
    });
    expect(result.final.sent).toBe(0);
    expect(result.load.failed).toBeGreaterThan(10);
    expect(result.objectives[0]?.passed, 'the final window held no request').toBe(false);
    expect(result.passed).toBe(false);
    expect(result.report).toMatch(/MISS {2}failed share in the final window: no requests/);
  });

  it('objectives still hold on real evidence: one request sent and answered passes', async () => {
    const result = await drill({
      print: false,
      load: { duration: 100, drive: async (send) => void (await send(async () => true)) },
      finalWindow: 100,
      objectives: { maxFailedShare: 0, maxP99: 500, maxRecovery: 0, maxFinalFailedShare: 0 },
    });
    expect(result.load.sent).toBe(1);
    expect(result.passed).toBe(true);
  });
});
