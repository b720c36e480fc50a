import { describe, expect, it } from 'vitest';
import { recordWarnings, tick } from '../../../test/support/warnings.js';
import {
  type Bus,
  createBus,
  ManualClock,
  messageOf,
  shieldBus,
  TimeoutError,
  timeout,
  warnOnce,
} from '../src/index.js';

/** An error no message can be read from: every read of it throws, `instanceof` too. */
function unreadable(): Error {
  const trap = () => {
    throw new Error('no reading me');
  };
  return new Proxy(new Error('hidden'), { get: trap, getPrototypeOf: trap, has: trap, ownKeys: trap });
}

const warnings = recordWarnings();

describe('messageOf and warnOnce (review)', () => {
  it('messageOf reads what it can and never throws', () => {
    expect(messageOf(new TypeError('bad'))).toBe('bad');
    expect(messageOf('text')).toBe('text');
    expect(messageOf(42)).toBe('42');
    expect(messageOf(undefined)).toBe('undefined');
    expect(messageOf(Object.create(null))).toBe('an error that cannot be read');
    expect(messageOf(unreadable())).toBe('an error that cannot be read');
    const getter = new Error('x');
    Object.defineProperty(getter, 'message', {
      get() {
        throw new Error('no');
      },
    });
    expect(messageOf(getter)).toBe('an error that cannot be read');
  });

  it('warnOnce tells each key once, in the set it is given, and names the code', async () => {
    const told = new WeakSet<object>();
    const a = {};
    const b = {};
    warnOnce(told, a, 'HOLDFAST_TEST', 'a broke', new Error('first'));
    warnOnce(told, a, 'HOLDFAST_TEST', 'a broke', new Error('second'));
    warnOnce(told, b, 'HOLDFAST_TEST', 'b broke', unreadable());
    await tick();
    expect(warnings).toEqual([
      { code: 'HOLDFAST_TEST', message: 'a broke: first' },
      { code: 'HOLDFAST_TEST', message: 'b broke: an error that cannot be read' },
    ]);
  });
});

describe('errors no message can be read from, thrown by user code (review)', () => {
  it('timeout: a bus that throws one still times the call out, and every later deadline still fires', async () => {
    const inner = createBus();
    const broken: Bus = {
      on: inner.on.bind(inner) as Bus['on'],
      once: inner.once.bind(inner) as Bus['once'],
      wants: () => true,
      emit: () => {
        throw unreadable();
      },
    };
    const clock = new ManualClock();
    const policy = timeout(100, { bus: broken, clock });
    const hang = (signal: AbortSignal) =>
      new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
    const first = policy.execute(({ signal }) => hang(signal)).catch((e: unknown) => e);
    await clock.advance(100);
    const later = policy.execute(({ signal }) => hang(signal)).catch((e: unknown) => e);
    await clock.advance(100);
    expect(await first).toBeInstanceOf(TimeoutError);
    expect(await later).toBeInstanceOf(TimeoutError);
    await tick();
    expect(warnings.filter((w) => w.code === 'HOLDFAST_BUS_ERROR').map((w) => w.message)).toEqual([
      'timeout: the bus threw (reported once per bus); the call went on: an error that cannot be read',
    ]);
  });

  it('a listener that throws one is still told (HOLDFAST_LISTENER_ERROR), once', async () => {
    const bus = createBus();
    let other = 0;
    bus.on('timeout', () => {
      throw unreadable();
    });
    bus.on('timeout', () => void other++);
    const event = { type: 'timeout', source: 't', time: 0, timeout: 1, strategy: 'cooperative' } as const;
    bus.emit(event);
    bus.emit(event);
    await tick();
    expect(other).toBe(2);
    expect(warnings.filter((w) => w.code === 'HOLDFAST_LISTENER_ERROR').map((w) => w.message)).toEqual([
      'a listener for "timeout" threw (reported once per listener): an error that cannot be read',
    ]);
  });

  it('shieldBus: a bus that throws one is told once per bus', async () => {
    const thrower = {
      wants: () => true,
      emit: () => {
        throw unreadable();
      },
    } as unknown as Bus;
    const a = shieldBus(thrower, 'a');
    const b = shieldBus(thrower, 'b');
    a.emit({ type: 'timeout', source: 'a', time: 0, timeout: 1, strategy: 'cooperative' });
    b.emit({ type: 'timeout', source: 'b', time: 0, timeout: 1, strategy: 'cooperative' });
    await tick();
    expect(warnings.filter((w) => w.code === 'HOLDFAST_BUS_ERROR').map((w) => w.message)).toEqual([
      'a: the bus threw (reported once per bus); the call went on: an error that cannot be read',
    ]);
  });
});
