import { describe, expect, it } from 'vitest';
import { perTest, reply } from './upstream.js';

const t = perTest();

// fetch(request, { signal: null }) drops the Request's own signal (undici: "if init.signal
// exists, set signal to it"): a service that re-sends an incoming Request with its abort taken
// off (`{ signal: null }`) got the Request's old abort instead, and nothing was sent.
describe('init.signal null over a Request that has its own signal (review)', { timeout: 30_000 }, () => {
  it('is no signal, as fetch reads it: the Request is sent even though its own signal aborted', async () => {
    const s = await t.server(reply(200));
    const http = t.client({ retry: false });
    const gone = new AbortController();
    gone.abort(new Error('the client that sent it left'));
    const request = new Request(`${s.url}/orders`, { method: 'POST', body: 'order-1', signal: gone.signal });
    const native = await fetch(request.clone(), { signal: null });
    expect(native.status).toBe(200);
    const res = await http(request, { signal: null });
    expect(res.status).toBe(200);
    expect(s.seen).toHaveLength(2);
  });
});
