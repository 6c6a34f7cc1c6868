/**
 * TarWriter: a Readable producing a deterministic tar stream from entries pushed into it.
 * `add` resolves once the entry's bytes have been handed to the stream, waiting whenever the
 * consumer is behind, so a layer is never buffered whole. Adds are serialised: calling `add`
 * again before the previous one settled queues it.
 */
import { Readable } from 'node:stream';
import { GantryError, wrapError } from '../util/errors.js';
import { BLOCK, encodeHeader, type HeaderEncodeOptions, type TarHeader } from './tar-header.js';

export type TarWriterOptions = HeaderEncodeOptions;

const ZEROS = Buffer.alloc(BLOCK * 2);

export class TarWriter extends Readable {
  private readonly opts: TarWriterOptions;
  private tail: Promise<void> = Promise.resolve();
  private wake: (() => void) | undefined;
  private finished = false;

  constructor(opts: TarWriterOptions = {}) {
    super({ highWaterMark: 256 * 1024 });
    this.opts = opts;
  }

  /** Appends one entry; `body` must produce exactly `header.size` bytes. */
  add(header: TarHeader, body?: Readable | Buffer): Promise<void> {
    if (this.finished) return Promise.reject(new GantryError('INTERNAL', `tar entry "${header.name}" added after finish()`));
    const run = this.tail.then(() => this.write(header, body));
    // Keep the queue alive after a failure; the failure itself is reported to this add's caller.
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Writes the end-of-archive marker (two zero blocks) and ends the stream. */
  finish(): Promise<void> {
    if (this.finished) return this.tail;
    this.finished = true;
    const run = this.tail.then(async () => {
      await this.emit_(ZEROS);
      this.push(null);
    });
    this.tail = run.catch(() => undefined);
    return run;
  }

  override _read(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this._read(); // release a pending add so it can observe the destruction
    cb(err);
  }

  private async emit_(chunk: Buffer): Promise<void> {
    if (this.destroyed) throw new GantryError('ABORTED', 'tar stream was closed before the archive was complete');
    if (this.push(chunk)) return;
    await new Promise<void>((resolve) => (this.wake = resolve));
    if (this.destroyed) throw new GantryError('ABORTED', 'tar stream was closed before the archive was complete');
  }

  private async write(header: TarHeader, body: Readable | Buffer | undefined): Promise<void> {
    const name = header.name;
    const size = header.size ?? 0;
    try {
      await this.emit_(encodeHeader(header, this.opts));
      let written = 0;
      if (Buffer.isBuffer(body)) {
        written = body.length;
        if (written === size && size > 0) await this.emit_(body);
      } else if (body) {
        for await (const chunk of body as AsyncIterable<Buffer | string>) {
          const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
          written += buf.length;
          if (written > size) break;
          await this.emit_(buf);
        }
      }
      if (written !== size) {
        throw new GantryError('SIZE_MISMATCH', `body is ${written > size ? 'longer' : 'shorter'} than the ${size} bytes in its header`, {
          hint: 'the file changed while it was being archived; retry, or make sure nothing writes to it during the build',
        });
      }
      const pad = (BLOCK - (size % BLOCK)) % BLOCK;
      if (pad) await this.emit_(ZEROS.subarray(0, pad));
    } catch (err) {
      const wrapped = wrapError(err, `writing tar entry "${name}"`);
      if (!this.destroyed) this.destroy(wrapped);
      throw wrapped;
    }
  }
}
