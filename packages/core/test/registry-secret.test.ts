import { describe, expect, it } from 'vitest';
import { createPolicyRegistry, type SnapshotSource } from '../src/index.js';

describe('policies.register(), a bad source', () => {
  it('throws a TypeError that names the policy without the password or key its name carries', () => {
    const policies = createPolicyRegistry();
    const register = () =>
      policies.register('breaker', 'https://alice:hunter2@pay.example/v1?api_key=SEKRET', {} as SnapshotSource);
    expect(register).toThrow(TypeError);
    expect(register).toThrow(/pay\.example/);
    // Before the fix: registerSnapshot("breaker", "https://alice:hunter2@pay.example/v1?api_key=SEKRET"): ...
    expect(register).not.toThrow(/hunter2|SEKRET/);
  });
});
