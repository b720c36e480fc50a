/**
 * A queue consumer under at-least-once delivery: the queue redelivers what was not acked in
 * time, and sometimes delivers twice. With idempotent(), each message's effect happens once.
 *
 *   pnpm --filter @holdfast/example-worker start
 */
import { pathToFileURL } from 'node:url';
import { type IdempotencyStore, idempotent, memoryStore } from '@holdfast/idempotency';

interface Message {
  readonly id: string;
  readonly account: string;
  readonly amount: number;
}

/** An in-memory queue that redelivers messages, as SQS, RabbitMQ or Kafka consumers see. */
function* deliveries(messages: readonly Message[], redeliverEvery: number): Generator<Message> {
  for (const [i, m] of messages.entries()) {
    yield m;
    if (i % redeliverEvery === 0) yield m; // a redelivery after a lost ack
  }
  yield* messages.slice(0, Math.ceil(messages.length / 10)); // a consumer restart replays the tail
}

export async function run(store: IdempotencyStore = memoryStore(), count = 200) {
  const balances = new Map<string, number>();
  let executions = 0;
  const credit = idempotent(
    async (m: Message) => {
      executions++;
      balances.set(m.account, (balances.get(m.account) ?? 0) + m.amount);
      return { credited: m.amount };
    },
    { store, key: (m) => m.id },
  );

  const messages = Array.from({ length: count }, (_, i) => ({ id: `msg-${i}`, account: `acct-${i % 7}`, amount: 10 }));
  let delivered = 0;
  for (const m of deliveries(messages, 9)) {
    delivered++;
    await credit(m);
  }
  const total = [...balances.values()].reduce((a, b) => a + b, 0);
  return { messages: messages.length, delivered, executions, total, expected: count * 10 };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const r = await run();
  console.log(`${r.delivered} deliveries of ${r.messages} messages: handler ran ${r.executions} times`);
  console.log(`credited ${r.total} in all (expected ${r.expected})`);
  if (r.executions !== r.messages || r.total !== r.expected) process.exitCode = 1;
}
