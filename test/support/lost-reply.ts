import { type FaultProxy, faultProxy } from '@holdfast/chaos';
import { type Bus, createBus } from '@holdfast/core';

/** A fault proxy that can lose one reply the way a dying connection loses it. */
export interface LossyProxy {
  readonly proxy: FaultProxy;
  /** Replies lost so far. */
  readonly lost: () => number;
  /**
   * Loses the next reply the server sends on `connection` (an id from `proxy.connections()`;
   * default every connection): a `drop` toxic swallows the next chunk, and the moment it does,
   * that connection is reset before anything else gets through. The server ran the command; the
   * client never hears back (ioredis reconnects and resends its unanswered commands). Resolves
   * once a reply is lost, or false after `waitMs` with none (the drop is then taken off).
   */
  loseNextReply(connection?: number, waitMs?: number): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * A `faultProxy` in front of `port` with its own bus: the drop toxic's removal (`chaos.toxic`,
 * `active: false`, emitted while the proxy swallows the chunk) is the cue to reset.
 */
export async function lossyProxy(port: number): Promise<LossyProxy> {
  const bus: Bus = createBus();
  const proxy = await faultProxy({ target: { port }, bus, name: 'lossy' });
  let lost = 0;
  let armed = 0;
  return {
    proxy,
    lost: () => lost,
    loseNextReply(connection, waitMs = 5_000) {
      const only = connection === undefined ? {} : { connection };
      const name = `lose-reply-${++armed}`;
      let expired = false;
      return new Promise((resolve) => {
        const off = bus.on('chaos.toxic', (e) => {
          if (e.name !== name || e.active) return;
          off();
          clearTimeout(timer);
          // Taken off by the timer below: nothing came back in time.
          if (expired) return resolve(false);
          // Taken off by its budget, while the chunk is being swallowed: cut the connection now.
          lost++;
          if (connection === undefined) proxy.resetAll();
          else proxy.add({ type: 'reset', ...only }).remove();
          resolve(true);
        });
        proxy.add({ type: 'drop', chunks: 1, name, ...only });
        const timer = setTimeout(() => {
          expired = true;
          proxy.remove(name);
        }, waitMs);
        timer.unref();
      });
    },
    close: () => proxy.close(),
  };
}
