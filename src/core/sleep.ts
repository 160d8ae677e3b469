/**
 * The one synchronous sleep. Everything here is synchronous: a lock another process holds, a pipe
 * another user set non-blocking, are waited on by sleeping the thread. The cell is made on first use: a
 * SharedArrayBuffer made when the module loads keeps a start-up snapshot from being built.
 */
let cell: Int32Array | undefined;

export function sleepSync(ms: number): void {
  Atomics.wait((cell ??= new Int32Array(new SharedArrayBuffer(4))), 0, 0, ms);
}
