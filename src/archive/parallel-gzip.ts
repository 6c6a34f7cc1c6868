/**
 * Parallel gzip: the input is cut into fixed-size pieces, each compressed on a worker thread as
 * a complete gzip member, and the members are emitted in order. Concatenated members are valid
 * gzip (RFC 1952 §2.2; gunzip, Go, Python and Node all read them), and because the cut points
 * depend only on the member size, the output is the same bytes for the same input whatever the
 * chunking, worker count or timing. It is NOT the same bytes as a single-stream gzip of the same
 * input: the compressed digest depends on the mode, the DiffID does not.
 *
 * Why workers and not zlib's async API on the libuv threadpool: the threadpool also serves file
 * reads, and a layer writer reading files while 4 compress jobs occupy the pool stalls. (With
 * `workers: 0`, on one CPU, members do go to the threadpool, at most 2 at a time.) Each job
 * gets its own ArrayBuffer, transferred, never a view of a larger buffer (posting a subarray
 * clones the whole backing store). The worker source is inline (`eval`) so bundlers need no
 * extra entry point.
 */
import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import { Worker } from 'node:worker_threads';
import zlib from 'node:zlib';
import { GantryError } from '../util/errors.js';

export interface ParallelGzipOptions {
  level?: number;
  /** Uncompressed bytes per gzip member; fixed for deterministic output. Default 1 MiB. */
  memberSize?: number;
  /**
   * Worker threads; default min(4, CPUs), or 0 on a single CPU, where members are compressed on
   * the libuv threadpool instead. The output bytes do not depend on this.
   */
  workers?: number;
}

export const DEFAULT_MEMBER_SIZE = 1024 * 1024;

/** Threads worth starting here: none on one CPU (they would only compete with the tar side). */
export function defaultGzipWorkers(): number {
  const cpus = availableParallelism();
  return cpus < 2 ? 0 : Math.min(4, cpus);
}

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const zlib = require('node:zlib');
parentPort.on('message', ({ id, input, length, level }) => {
  try {
    // One output chunk larger than any gzip of the input (stored blocks add ~5 bytes per 16 KiB):
    // the result is then a view of a fresh buffer that is handed over as is, not copied. (The
    // chunk size does not change the bytes.)
    const out = zlib.gzipSync(new Uint8Array(input, 0, length), { level, chunkSize: length + (length >> 3) + 1024 });
    let ab = out.buffer;
    // A well-compressed member would pin a mostly empty buffer downstream: copy that one out.
    if (out.byteOffset !== 0 || out.length * 4 < ab.byteLength) ab = ab.slice(out.byteOffset, out.byteOffset + out.length);
    // The input goes back too, to be filled again: garbage buffers pile up in a thread that
    // allocates too little to collect them often.
    parentPort.postMessage({ id, output: ab, length: out.length, input }, [ab, input]);
  } catch (err) {
    parentPort.postMessage({ id, error: String(err && err.message || err), input }, [input]);
  }
});
`;

interface Job {
  resolve(b: Buffer): void;
  reject(e: Error): void;
}

/** Member buffers kept for reuse, per member size; a few beyond what is in flight at once. */
const SPARE_MEMBERS = 8;

/**
 * A small pool of gzip workers with round-robin dispatch; jobs settle in any order. One pool
 * serves the whole process (starting threads costs ~100 ms, more than compressing a typical RUN
 * layer), and its threads keep the process alive only while jobs are in flight.
 */
class GzipPool {
  private readonly workers: Worker[] = [];
  private readonly jobs = new Map<number, Job>();
  private readonly spare = new Map<number, ArrayBuffer[]>();
  private nextId = 0;
  broken = false;

  constructor(readonly size: number) {
    for (let i = 0; i < size; i++) {
      const w = new Worker(WORKER_SOURCE, { eval: true });
      w.unref();
      w.on('message', (m: { id: number; output?: ArrayBuffer; length?: number; error?: string; input?: ArrayBuffer }) => {
        if (m.input) this.giveBack(m.input);
        const job = this.jobs.get(m.id);
        if (!job) return;
        this.settled(m.id);
        if (m.output) job.resolve(Buffer.from(m.output, 0, m.length ?? m.output.byteLength));
        else job.reject(new GantryError('INTERNAL', `gzip worker failed: ${m.error}`));
      });
      w.on('error', (err) => this.fail(new GantryError('INTERNAL', `gzip worker crashed: ${err.message}`, {}, { cause: err })));
      w.on('exit', (code) => this.fail(new GantryError('INTERNAL', `gzip worker exited unexpectedly (code ${code})`)));
      this.workers.push(w);
    }
  }

  /** A zeroed-or-reused buffer of `size` bytes to fill as a member (contents are overwritten). */
  memberBuffer(size: number): ArrayBuffer {
    return this.spare.get(size)?.pop() ?? new ArrayBuffer(size);
  }

  private giveBack(buf: ArrayBuffer): void {
    let list = this.spare.get(buf.byteLength);
    if (!list) this.spare.set(buf.byteLength, (list = []));
    if (list.length < SPARE_MEMBERS) list.push(buf);
  }

  /** Compresses the first `length` bytes of `input`, which is handed over (and later reused). */
  compress(input: ArrayBuffer, length: number, level: number): Promise<Buffer> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (this.jobs.size === 0) for (const w of this.workers) w.ref();
      this.jobs.set(id, { resolve, reject });
      this.workers[id % this.workers.length]!.postMessage({ id, input, length, level }, [input]);
    });
  }

  private settled(id: number): void {
    this.jobs.delete(id);
    if (this.jobs.size === 0) for (const w of this.workers) w.unref();
  }

  /** A dead worker poisons the pool: its jobs fail and the next layer starts a fresh pool. */
  private fail(err: Error): void {
    if (this.broken) return;
    this.broken = true;
    for (const job of this.jobs.values()) job.reject(err);
    this.jobs.clear();
    for (const w of this.workers) void w.terminate();
  }
}

let sharedPool: GzipPool | undefined;

function poolOf(size: number): GzipPool {
  if (!sharedPool || sharedPool.broken || sharedPool.size !== size) sharedPool = new GzipPool(size);
  return sharedPool;
}

export class ParallelGzip extends Transform {
  private readonly level: number;
  private readonly memberSize: number;
  private readonly poolSize: number;
  private pool: GzipPool | undefined;
  /** The member being filled: an own ArrayBuffer so it can be transferred as is. */
  private member: Uint8Array;
  private filled = 0;
  private readonly inFlight: Array<Promise<Buffer>> = [];

  constructor(opts: ParallelGzipOptions = {}) {
    super();
    this.level = opts.level ?? 6;
    this.memberSize = opts.memberSize ?? DEFAULT_MEMBER_SIZE;
    this.poolSize = opts.workers ?? defaultGzipWorkers();
    if (!Number.isInteger(this.memberSize) || this.memberSize < 1024) {
      throw new GantryError('INVALID_ARGUMENT', `gzip member size must be an integer >= 1024, got ${this.memberSize}`);
    }
    const pool = sharedPool && !sharedPool.broken ? sharedPool : undefined;
    this.member = new Uint8Array(pool ? pool.memberBuffer(this.memberSize) : new ArrayBuffer(this.memberSize));
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    let pos = 0;
    while (pos < chunk.length) {
      const n = Math.min(chunk.length - pos, this.memberSize - this.filled);
      this.member.set(chunk.subarray(pos, pos + n), this.filled);
      this.filled += n;
      pos += n;
      if (this.filled === this.memberSize) this.submit();
    }
    // Hold the writer back while the queue is full: that is the backpressure towards the tar.
    this.emitReady(Math.max(1, this.poolSize) * 2).then(() => cb(), cb);
  }

  override _flush(cb: TransformCallback): void {
    // An empty input still yields one (empty) member so the output is a valid gzip file.
    if (this.filled > 0 || this.nextIndex === 0) this.submit();
    this.emitReady(0).then(() => cb(), cb);
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    // Members still in the shared pool finish and are dropped; nothing else is waiting on them.
    this.inFlight.length = 0;
    cb(err);
  }

  private nextIndex = 0;

  private submit(): void {
    const input = this.member.buffer as ArrayBuffer;
    const length = this.filled;
    this.nextIndex++;
    let job: Promise<Buffer>;
    // A single-member layer (most layers are small) is not worth starting threads for; the
    // output is identical either way since both use this process's zlib.
    if (this.poolSize === 0 || (!this.pool && length < this.memberSize)) {
      const level = this.level;
      // The buffer stays ours until zlib is done with it: the next member gets a fresh one.
      job = new Promise((resolve, reject) => zlib.gzip(new Uint8Array(input, 0, length), { level }, (err, out) => (err ? reject(err) : resolve(out))));
      // Only a full member has a successor (a short one is the last).
      if (length === this.memberSize) this.member = new Uint8Array(this.memberSize);
    } else {
      this.pool ??= poolOf(this.poolSize);
      // Handed over whole; it comes back to the pool's spares once compressed.
      job = this.pool.compress(input, length, this.level);
      if (length === this.memberSize) this.member = new Uint8Array(this.pool.memberBuffer(this.memberSize));
    }
    // Failures are reported in order by emitReady; a later member failing first must not
    // become an unhandled rejection meanwhile.
    job.catch(() => undefined);
    this.inFlight.push(job);
    this.filled = 0;
  }

  /** Pushes finished members in order until at most `keep` are still pending. */
  private async emitReady(keep: number): Promise<void> {
    while (this.inFlight.length > keep) {
      const out = await this.inFlight[0]!;
      this.inFlight.shift();
      this.push(out);
    }
  }
}
