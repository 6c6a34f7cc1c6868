/**
 * Records a layer's index while the layer streams past (to the unpacker or the tar writer), so
 * indexing costs no second read: headers always, bodies only for the few files the index keeps.
 */
import { Transform, pipeline, type Readable } from 'node:stream';
import { INDEXED_CONTENT_MAX, keepsContent, type IndexEntry, type IndexEntryType } from './path-tree.js';

interface RecordableHeader {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: Date | number;
  linkname?: string;
}

const KNOWN = new Set<string>(['dir', 'file', 'symlink', 'hardlink', 'char', 'block', 'fifo']);

/** Collects up to INDEXED_CONTENT_MAX bytes of what passes through. */
class Collector extends Transform {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  constructor(private readonly done: (content: Buffer | undefined) => void) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null, data?: Buffer) => void): void {
    this.size += chunk.length;
    if (this.size <= INDEXED_CONTENT_MAX) this.chunks.push(chunk);
    cb(null, chunk);
  }
  override _flush(cb: () => void): void {
    this.done(this.size <= INDEXED_CONTENT_MAX ? Buffer.concat(this.chunks) : undefined);
    cb();
  }
}

/**
 * Passes `entries` through unchanged (a kept file's stream body is replaced by a pass-through
 * copy) and appends each one's index entry to `out`. The caller uses `out` once the stream ended.
 */
export async function* recordIndex<E extends { header: RecordableHeader; body?: Buffer | Readable | undefined }>(entries: AsyncIterable<E>, out: IndexEntry[]): AsyncGenerator<E> {
  for await (const e of entries) {
    const h = e.header;
    if (!KNOWN.has(h.type)) {
      yield e;
      continue;
    }
    const ie: IndexEntry = {
      name: h.name,
      type: h.type as IndexEntryType,
      mode: h.mode,
      uid: h.uid,
      gid: h.gid,
      mtime: typeof h.mtime === 'number' ? h.mtime : h.mtime.getTime() / 1000,
    };
    if (h.linkname !== undefined && (h.type === 'symlink' || h.type === 'hardlink')) ie.linkname = h.linkname;
    out.push(ie);
    if (h.type !== 'file' || !keepsContent(h.name) || e.body === undefined) {
      yield e;
      continue;
    }
    if (Buffer.isBuffer(e.body)) {
      if (e.body.length <= INDEXED_CONTENT_MAX) ie.content = Buffer.from(e.body);
      yield e;
      continue;
    }
    const copy = new Collector((c) => {
      if (c) ie.content = c;
    });
    pipeline(e.body, copy, () => {});
    yield { ...e, body: copy };
  }
}
