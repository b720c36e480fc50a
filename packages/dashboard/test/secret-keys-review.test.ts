/**
 * A snapshot of a kind the page does not know is served as it is, but for secrets. Keys that name
 * a credential in the plural (`apiKeys`, `tokens`, `secrets`) and values under a key that names
 * one that are no text (a list of keys, a map of passwords, a Buffer) were served as they were.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBus, createPolicyRegistry, type JsonValue } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { dashboard } from '../src/index.js';

async function others(snapshot: () => unknown): Promise<string> {
  const policies = createPolicyRegistry();
  const source = { snapshot: snapshot as () => JsonValue };
  policies.register('keys', 'rotation', source);
  const dash = dashboard({ bus: createBus(), policies });
  const server = createServer(dash);
  try {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/holdfast/snapshot`);
    const body = (await res.json()) as { others: { name: string; snapshot: unknown }[] };
    expect(source).toBeDefined();
    return JSON.stringify(body.others.find((o) => o.name === 'rotation')?.snapshot);
  } finally {
    dash.close();
    server.close();
  }
}

describe('dashboard others: secrets under keys that name them', () => {
  it('hides lists, maps and buffers under a key that names a credential, and keys in the plural', async () => {
    const shown = await others(() => ({
      apiKeys: ['sk_live_AAAA1111', 'sk_live_BBBB2222'],
      tokens: { github: 'ghp_CCCC3333' },
      dbPassword: { primary: 'pw_DDDD4444' },
      sessionTokens: ['sess_EEEE5555'],
      signingSecret: Buffer.from('FFFF6666'),
      secrets: ['GGGG7777'],
      clientSecrets: 'IIII9999',
      passwords: { admin: 'JJJJ0000' },
    }));
    const leaked = [
      'AAAA1111',
      'BBBB2222',
      'CCCC3333',
      'DDDD4444',
      'EEEE5555',
      'GGGG7777',
      'IIII9999',
      'JJJJ0000',
    ].filter((s) => shown.includes(s));
    // The Buffer's bytes as JSON writes them: 'FFFF6666' is [70,70,70,70,54,54,54,54].
    if (shown.includes('70,70,70,70,54,54,54,54')) leaked.push('FFFF6666');
    expect(leaked).toEqual([]);
  });

  it('still shows counts and flags under such keys, and what names no credential', async () => {
    const shown = JSON.parse(
      await others(() => ({ maxTokens: 100, tokens: 12, authEnabled: true, keyspace: 'cache', hosts: ['a', 'b'] })),
    );
    expect(shown).toEqual({ maxTokens: 100, tokens: 12, authEnabled: true, keyspace: 'cache', hosts: ['a', 'b'] });
  });
});
