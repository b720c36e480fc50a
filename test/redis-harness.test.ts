import { Socket } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { redisAvailable, startRedis, stopAllRedis } from './support/redis.js';

function ping(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = new Socket();
    socket.once('error', reject);
    socket.connect(port, '127.0.0.1', () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      socket.destroy();
      resolve(data.toString().trim());
    });
  });
}

describe.skipIf(!redisAvailable())('test harness: redis-server processes', () => {
  afterAll(stopAllRedis);

  it('starts N servers on distinct free loopback ports, and kills, restarts and stops them', async () => {
    const [a, b] = await startRedis(2);
    if (!a || !b) throw new Error('expected two servers');
    expect(a.port).not.toBe(b.port);
    expect(await ping(a.port)).toBe('+PONG');
    expect(await ping(b.port)).toBe('+PONG');

    await a.kill();
    expect(a.running).toBe(false);
    await expect(ping(a.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });

    await a.restart();
    expect(a.running).toBe(true);
    expect(await ping(a.port)).toBe('+PONG');

    await b.stop();
    expect(b.running).toBe(false);
  });
});
