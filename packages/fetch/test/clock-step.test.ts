import { afterEach, describe, expect, it } from 'vitest';
import { HOUR, stepWallClock } from '../../../test/support/wall-clock.js';
import { type ResilientFetch, resilientFetch } from '../src/index.js';
import { type Handler, type Upstream, upstream } from './upstream.js';

// Date.now() steps (stepWallClock) while Node's timers and performance.now() run on:
// the total deadline on the real clock must not follow the step.

const open: Upstream[] = [];
const made: ResilientFetch[] = [];

afterEach(async () => {
  for (const http of made.splice(0)) http.dispose();
  await Promise.all(open.splice(0).map((s) => s.close()));
});

async function stepping(step: number, endAfter: number): Promise<Upstream> {
  // The clock steps while the request is out: after the call started, before its headers came back.
  const handler: Handler = (_, res) => {
    stepWallClock(step);
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('hello ');
    setTimeout(() => res.end('world'), endAfter);
  };
  const s = await upstream(handler);
  open.push(s);
  return s;
}

function client(total: number): ResilientFetch {
  const http = resilientFetch({ timeout: { perTry: total, total }, retry: false });
  made.push(http);
  return http;
}

describe('resilientFetch: wall-clock steps, real clock', () => {
  it('a step forward of an hour while the request is out does not time out the body at once', async () => {
    const s = await stepping(HOUR, 20);
    const res = await client(10_000)(`${s.url}/report`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('hello world');
  });

  it('a step back of an hour while the request is out does not add the hour to the total deadline', async () => {
    const s = await stepping(-HOUR, 2_000);
    const res = await client(300)(`${s.url}/report`);
    expect(res.status).toBe(200);
    // 300 ms in all: the body that takes 2 s is cut off, not read to the end an hour later.
    await expect(res.text()).rejects.toMatchObject({ code: 'E_TIMEOUT' });
  });
});
