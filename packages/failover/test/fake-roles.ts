import type { RoleReport } from '../src/index.js';

/** A server of the stale-primary tests: the role it reports (or a check that hangs) and the writes it took. */
export interface Fake {
  name: string;
  report: RoleReport | 'hang';
  writes: number;
  /** When set, a write waits for it. */
  gate?: Promise<void>;
}

export function servers(...specs: [string, Fake['report']][]) {
  const nodes = new Map<string, Fake>(specs.map(([name, report]) => [name, { name, report, writes: 0 }]));
  const node = (name: string) => nodes.get(name) as Fake;
  const check = async (e: { target: Fake }) => {
    const r = e.target.report;
    return r === 'hang' ? new Promise<RoleReport>(() => {}) : r;
  };
  const endpoints = [...nodes.values()].map((n) => ({ name: n.name, target: n }));
  return { node, check, endpoints };
}

export const write = async (e: { target: Fake }) => {
  await e.target.gate;
  e.target.writes++;
  return e.target.name;
};

export const primary = (token: unknown): RoleReport => ({ role: 'primary', token });
export const replica: RoleReport = { role: 'replica', token: [1, 0], lag: 0 };
