import { connect, type Socket } from 'node:net';

/** A response as a keep-alive {@link Conn} read it. */
export interface Answer {
  status: number;
  /** Sorted header lines, Date, Connection and Keep-Alive taken out. */
  headers: string;
  /** It carried `Idempotent-Replayed: true`. */
  replayed: boolean;
  /** Its bytes, one character a byte (latin1). */
  body: string;
}

/**
 * A keep-alive connection over a raw socket that collects every response it is sent
 * (Content-Length framed; 1xx kept as their own answers), in order: for the early replay, which
 * only a real socket takes (app.inject never does), with writes split and paced as a test needs.
 */
export class Conn {
  readonly socket: Socket;
  readonly answers: Answer[] = [];
  closed = false;
  #got = Buffer.alloc(0);
  #waiters: (() => void)[] = [];

  /** `heads`: answers to HEAD requests, with a Content-Length and no body. */
  constructor(
    port: number,
    readonly heads = false,
  ) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.on('data', (d: Buffer) => {
      this.#got = Buffer.concat([this.#got, d]);
      this.#parse();
    });
    this.socket.on('error', () => {});
    this.socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
  }

  #wake(): void {
    for (const waiter of this.#waiters.splice(0)) waiter();
  }

  #parse(): void {
    for (;;) {
      const at = this.#got.indexOf('\r\n\r\n');
      if (at < 0) return;
      const text = this.#got.subarray(0, at).toString('latin1');
      const lines = text.split('\r\n');
      const length = this.heads ? 0 : Number(/\r\ncontent-length: *(\d+)/i.exec(text)?.[1] ?? 0);
      if (this.#got.length < at + 4 + length) return;
      this.answers.push({
        status: Number(lines[0]?.split(' ')[1]),
        headers: lines
          .slice(1)
          .filter((line) => !/^(date|connection|keep-alive):/i.test(line))
          .sort()
          .join('\n'),
        replayed: /\r\nidempotent-replayed: true/i.test(text),
        body: this.#got.subarray(at + 4, at + 4 + length).toString('latin1'),
      });
      this.#got = this.#got.subarray(at + 4 + length);
      this.#wake();
    }
  }

  write(data: string | Buffer): this {
    this.socket.write(data);
    return this;
  }

  /** Resolves once `count` answers came, the connection closed, or `ms` passed. */
  async until(count: number, ms = 3000): Promise<Answer[]> {
    const deadline = Date.now() + ms;
    while (this.answers.length < count && !this.closed && Date.now() < deadline) {
      await Promise.race([
        new Promise<void>((resolve) => this.#waiters.push(resolve)),
        new Promise((resolve) => setTimeout(resolve, 100)),
      ]);
    }
    return this.answers;
  }

  end(): void {
    this.socket.destroy();
  }
}
