/**
 * What a snapshot build costs on a big registry, counted (not timed): every text served is hidden
 * as core hides it (hideSecrets, which parses a URL), and names come back every interval, so each
 * is hidden once, however many the registry holds.
 */
import { createBus, createPolicyRegistry, healthReport, Redactor } from '@holdfast/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DashboardState } from '../src/state.js';
import { FakeBreaker } from './fakes.js';

/** What a test registered, held to its end: the registry holds what it lists weakly. */
const held: object[] = [];
const states: DashboardState[] = [];
afterEach(() => {
  held.length = 0;
  for (const s of states.splice(0)) s.dispose();
  vi.restoreAllMocks();
});

const stream = () => ({ clients: 0, dropped: 0, refused: 0 });

describe('dashboard: a snapshot of 10,000 breakers', () => {
  // Every hideSecrets() goes through Redactor.prototype.text, the dashboard's and core's alike.
  const hidings = () => vi.spyOn(Redactor.prototype, 'text');

  it.each([
    ['plain names', (i: number) => `breaker-${i}`],
    ['named by their URL', (i: number) => `https://svc:pw${i}@api-${i}.example.com:8443/v1?api_key=k${i}`],
  ])('hides each name once, not once per build (%s)', (_kind, name) => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    for (let i = 0; i < 10_000; i++) held.push(new FakeBreaker(name(i), bus, policies));
    const state = new DashboardState(bus, policies, () => 1, stream);
    states.push(state);
    const text = hidings();
    const first = state.json();
    const cold = text.mock.calls.length;
    expect(cold).toBeGreaterThanOrEqual(10_000);
    text.mockClear();
    const second = state.json();
    expect(text.mock.calls.length).toBe(0);
    // The same texts shown (but the health report's time, from the real clock).
    const untimed = (json: string) => json.replace(/"time":\d+/g, '');
    expect(untimed(second) === untimed(first)).toBe(true);
    // No password is served, hidden once or many times.
    expect(second).not.toMatch(/:pw\d/);
    expect(second).not.toMatch(/api_key=k\d/);
  });

  it('a breaker that joins is hidden once, and only it', () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    const name = (i: number) => `https://svc:pw@api-${i}.example.com/`;
    for (let i = 0; i < 10_000; i++) held.push(new FakeBreaker(name(i), bus, policies));
    const state = new DashboardState(bus, policies, () => 1, stream);
    states.push(state);
    state.json();
    held.push(new FakeBreaker(name(10_000), bus, policies));
    const text = hidings();
    const shown = JSON.parse(state.json()) as { breakers: { name: string }[] };
    expect(shown.breakers).toHaveLength(10_001);
    expect(shown.breakers.at(-1)?.name).toBe('https://***@api-10000.example.com/');
    // The new name, in the health report's check and in the breakers' table.
    const others = text.mock.calls.map(([t]) => t).filter((t) => !t.includes('api-10000'));
    expect(others.length).toBe(0);
  });

  it('/health on 10,000 breakers named by their URL hides each name once, not once per report', () => {
    const bus = createBus();
    const policies = createPolicyRegistry();
    for (let i = 0; i < 10_000; i++) held.push(new FakeBreaker(`redis://app:pw${i}@cache-${i}:6379/0`, bus, policies));
    const text = hidings();
    const first = healthReport({ policies });
    expect(text.mock.calls.length).toBeGreaterThanOrEqual(10_000);
    text.mockClear();
    const second = healthReport({ policies });
    expect(text.mock.calls.length).toBe(0);
    expect(second.checks).toEqual(first.checks);
    expect(first.checks[9_999]?.name).toBe('redis://***@cache-9999:6379/0');
  });
});
