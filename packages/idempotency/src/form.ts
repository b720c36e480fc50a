/**
 * @internal A canonical form being written, that copies a part of itself (a value met again) in
 * time that grows with the part. Appended to with `+=` (a rope: cheap), and sealed into pieces
 * only when a part is copied: a slice of the string being built flattened all of it, for each
 * copy (n references to one object took n² time: 80,000 took 45 s).
 */
export class Form {
  readonly #pieces: string[] = [];
  /** The piece being written. */
  #last = '';
  /** The length of the pieces sealed. */
  #sealed = 0;

  get length(): number {
    return this.#sealed + this.#last.length;
  }

  write(text: string): void {
    this.#last += text;
  }

  /** A part starting here. */
  open(): Span {
    return new Span(this.#pieces.length, this.#last.length, this.length);
  }

  /** `span` ends here. */
  close(span: Span): void {
    span.endPiece = this.#pieces.length;
    span.endOffset = this.#last.length;
    span.length = this.length - span.from;
  }

  /** The text of a closed `span`, taken once. */
  copy(span: Span): string {
    if (span.text !== undefined) return span.text;
    // Its end is in the piece being written: sealed, it is flattened once and never again.
    if (span.endPiece === this.#pieces.length) {
      this.#pieces.push(this.#last);
      this.#sealed += this.#last.length;
      this.#last = '';
    }
    const pieces = this.#pieces;
    let text: string;
    if (span.piece === span.endPiece) text = (pieces[span.piece] as string).slice(span.offset, span.endOffset);
    else {
      text = (pieces[span.piece] as string).slice(span.offset);
      for (let i = span.piece + 1; i < span.endPiece; i++) text += pieces[i];
      text += (pieces[span.endPiece] as string).slice(0, span.endOffset);
    }
    span.text = text;
    return text;
  }

  text(): string {
    return this.#pieces.length === 0 ? this.#last : this.#pieces.join('') + this.#last;
  }
}

/** @internal Where a part of a {@link Form} is: its start, and its end once closed (-1 while open). */
export class Span {
  endPiece = -1;
  endOffset = 0;
  length = 0;
  text: string | undefined = undefined;
  constructor(
    readonly piece: number,
    readonly offset: number,
    readonly from: number,
  ) {}
}
