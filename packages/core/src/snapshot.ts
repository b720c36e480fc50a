/** A value that survives `JSON.stringify` and `JSON.parse` unchanged. */
export type JsonValue = string | number | boolean | null | readonly JsonValue[] | { readonly [key: string]: JsonValue };

/** A policy that holds state: it can report it as plain JSON and release its timers. */
export interface Snapshottable<S extends JsonValue = JsonValue> {
  /** The state as plain JSON: what the dashboard and `/health` endpoints serve. */
  snapshot(): S;
  /** Stops timers and drops state. Using the policy afterwards throws `E_DISPOSED`. */
  dispose(): void;
}
