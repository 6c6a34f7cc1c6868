/**
 * A Duplex over an external filter program (`bzip2 -dc`, `xz -dc`): bytes written go to its
 * stdin, its stdout is readable. The stream ends only when the program exited 0, so a corrupt
 * or truncated input surfaces as an error instead of a silently short output.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { Duplex } from 'node:stream';
import { GantryError } from '../util/errors.js';

export interface ChildCodecOptions {
  command: string;
  args: string[];
  /** What the program does, for messages: "bzip2 decompression". */
  what: string;
  /** Printed when the program is missing: how to install it. */
  installHint: string;
}

export class ChildCodec extends Duplex {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly stderr: Buffer[] = [];
  private exited = false;

  constructor(private readonly opts: ChildCodecOptions) {
    super();
    this.child = spawn(opts.command, opts.args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const { child } = this;
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') {
        this.destroy(new GantryError('UNSUPPORTED', `${opts.what} needs the "${opts.command}" program, which was not found on PATH`, { hint: opts.installHint }));
      } else {
        this.destroy(new GantryError('IO', `${opts.what}: cannot run "${opts.command}": ${err.message}`, {}, { cause: err }));
      }
    });
    child.stdout.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) child.stdout.pause();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (this.stderr.length < 16) this.stderr.push(chunk);
    });
    // The program stops reading when it hits bad data; its exit status says why, not EPIPE.
    child.stdin.on('error', () => undefined);
    child.on('close', (code, signal) => {
      this.exited = true;
      if (this.destroyed) return;
      if (code === 0) {
        this.push(null);
        return;
      }
      const detail = Buffer.concat(this.stderr).toString('utf8').trim().split('\n').slice(-3).join('; ');
      this.destroy(
        new GantryError('ARCHIVE_INVALID', `${opts.what} failed (${opts.command} exited with ${signal ?? code})${detail ? `: ${detail}` : ''}`),
      );
    });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.child.stdin.write(chunk)) cb();
    else this.child.stdin.once('drain', () => cb());
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.child.stdin.end();
    cb();
  }

  override _read(): void {
    this.child.stdout.resume();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.exited) this.child.kill('SIGKILL');
    cb(err);
  }
}
