import type { Readable } from 'node:stream';
import type { OutputSink } from './types.js';

/** Keeps the last lines of a RUN's combined output for the caller's error message. */
export class TailBuffer {
  private readonly lines: string[] = [];
  private readonly partial = new Map<string, string>();

  constructor(private readonly max = 50) {}

  push(stream: string, chunk: Buffer): void {
    const text = (this.partial.get(stream) ?? '') + chunk.toString('utf8');
    const parts = text.split('\n');
    this.partial.set(stream, (parts.pop() ?? '').slice(-4096));
    for (const line of parts) this.add(line.replace(/\r$/, ''));
  }

  lines_(): string[] {
    const out = [...this.lines];
    for (const rest of this.partial.values()) if (rest !== '') out.push(rest);
    return out.slice(-this.max);
  }

  private add(line: string): void {
    this.lines.push(line.length > 4096 ? line.slice(0, 4096) + '…' : line);
    if (this.lines.length > this.max) this.lines.shift();
  }
}

/** Feeds a child's output to the caller's sink (pausing the child while a stream sink is full) and the tail. */
export function forwardOutput(from: Readable, name: string, sink: OutputSink | undefined, tail: TailBuffer): void {
  from.on('data', (chunk: Buffer) => {
    tail.push(name, chunk);
    if (!sink) return;
    if (typeof sink === 'function') {
      sink(chunk);
      return;
    }
    if (sink.destroyed || sink.writableEnded) return;
    if (!sink.write(chunk)) {
      from.pause();
      // A sink that fails or closes must not stall the RUN: its output is then only tailed.
      const resume = () => {
        sink.off('drain', resume);
        sink.off('close', resume);
        sink.off('error', resume);
        from.resume();
      };
      sink.on('drain', resume);
      sink.on('close', resume);
      sink.on('error', resume);
    }
  });
}
