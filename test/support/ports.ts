import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** The lowest local port the kernel gives outgoing connections (Linux's range; its default elsewhere). */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 4096 ? low : 32768;
  } catch {
    return 32768;
  }
}

/** Ports this process handed out: never twice. */
const given = new Set<number>();

/**
 * A free loopback port for a server a test starts, kills and starts again on the same port:
 * below the kernel's range for outgoing connections' local ports. A port from `listen(0)` is from
 * that range, so any connection of any process could be given it while the server was not yet up
 * or was down: a PostgreSQL node of the fresh-clone CI found its port taken at its first start
 * ("could not bind IPv4 address: Address already in use"), seconds after the port was picked.
 * Random within 16,000 ports below that range (from 20,000 up: see below), and checked free when
 * handed out.
 */
export async function freePort(): Promise<number> {
  const high = ephemeralLow();
  // Above 19,999: @holdfast/chaos's faultProxy takes its free ports from 10,000-19,999.
  const low = Math.max(high > 21_000 ? 20_000 : 1_024, high - 16_000);
  for (let tries = 0; tries < 100; tries++) {
    const port = low + Math.floor(Math.random() * (high - low));
    if (given.has(port) || !(await bindable(port))) continue;
    given.add(port);
    return port;
  }
  throw new Error(`no free loopback port in ${low}-${high - 1}`);
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
