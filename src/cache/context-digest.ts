/**
 * Content digest of the context files a COPY/ADD reads, for its cache key. Hashing every byte of
 * a large context on every build is what made Kaniko's COPY caching slow, so file hashes are
 * remembered in an on-disk index keyed by stat identity (size, mtime, inode, ctime): an unchanged
 * file is not read again. ctime cannot be set from user space, so a file rewritten with its old
 * mtime still changes ctime and is re-hashed.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, createReadStream, openSync, readFileSync, readlinkSync, readSync, type Stats } from 'node:fs';
import { lstat, mkdir, readdir, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { wrapError } from '../util/errors.js';
import { limiter } from '../util/limit.js';

/** One context entry as the walker yields it (src/context WalkEntry fits). */
export interface ContextFile {
  /** Relative to the context root, `/`-separated. */
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  stat: Stats;
}

/** What the digest covers for one file. */
export interface FileDigest {
  path: string;
  type: ContextFile['type'];
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Hex sha256 of the content (regular files). */
  sha256?: string;
  /** Symlink target as stored. */
  linkname?: string;
}

export interface ContextDigestStats {
  files: number;
  /** Regular files whose content was read and hashed. */
  hashed: number;
  /** Regular files whose hash came from the index without reading them. */
  reused: number;
  bytesHashed: number;
}

export interface ContextDigestResult {
  /** `sha256:...` over every FileDigest in path order (length-framed, see docs/cache.md). */
  digest: string;
  files: FileDigest[];
  stats: ContextDigestStats;
}

export interface ContextDigestOptions {
  /** Owner after `--chown`; default 0:0, what COPY without --chown produces (the disk's owner never matters). */
  owner?: { uid: number; gid: number };
  /** An index shared across several calls in one build; saved by the caller. */
  index?: ContextHashIndex;
  /**
   * Directory to keep the index in (`<dir>/context-<hash of root>.json`); loaded and saved by this
   * call. Only worth it for a context directory that persists between builds: a git or tarball
   * context extracted to a fresh temp dir would leave one useless index file per build.
   */
  indexDir?: string;
  /** Parallel file reads. */
  concurrency?: number;
}

const INDEX_VERSION = 1;
/**
 * Kernel file timestamps advance in clock ticks (up to 10 ms), so a file written again within the
 * same tick as our read keeps its timestamps. Like git's "racily clean" rule, an entry is trusted
 * only if the file's mtime and ctime are safely older than the moment we started reading it.
 */
export const RACY_MARGIN_MS = 100;
/**
 * The margin when the file's mtime and ctime both fall on whole seconds: its filesystem keeps
 * second (ext3, some NFS/FUSE) or two-second (FAT) timestamps, so an edit after the hash can
 * carry a timestamp up to that much older than the edit. (A fine-grained filesystem gives a
 * whole-second ctime once in a thousand files, which only costs that file a re-read.)
 */
export const COARSE_RACY_MARGIN_MS = 2_000;
/** Entries kept at most; a context larger than this re-hashes the overflow. */
const MAX_INDEX_ENTRIES = 500_000;

const INDEX_FILE = /^context-[0-9a-f]{32}\.json$/;
const INDEX_TEMP = /^context-[0-9a-f]{32}\.json\.tmp-/;

type IndexEntry = [size: number, mtimeMs: number, ino: number, ctimeMs: number, sha256: string, hashedAtMs: number];

/** path (absolute) -> stat identity + content hash. */
export class ContextHashIndex {
  /** Changes since load; `saved` is the count the file on disk has seen (concurrent saves stay correct). */
  private changes = 0;
  private saved = 0;

  private constructor(
    readonly file: string | undefined,
    private readonly entries: Map<string, IndexEntry>,
    private readonly racyMarginMs: number,
  ) {}

  static empty(racyMarginMs = RACY_MARGIN_MS): ContextHashIndex {
    return new ContextHashIndex(undefined, new Map(), racyMarginMs);
  }

  /** Loads `file`; a missing, unreadable or foreign-version file gives an empty index (it is only a cache). */
  static async load(file: string, racyMarginMs = RACY_MARGIN_MS): Promise<ContextHashIndex> {
    const entries = new Map<string, IndexEntry>();
    try {
      // One blocking read: the promise API reads in chunks, each a thread-pool round trip.
      const doc = JSON.parse(readFileSync(file, 'utf8')) as { version?: unknown; entries?: unknown };
      if (doc.version === INDEX_VERSION && doc.entries && typeof doc.entries === 'object') {
        for (const [path, e] of Object.entries(doc.entries as Record<string, unknown>)) {
          if (Array.isArray(e) && e.length === 6 && typeof e[4] === 'string' && e.every((x, i) => i === 4 || typeof x === 'number')) {
            entries.set(path, e as IndexEntry);
          }
        }
      }
    } catch {
      // start empty
    }
    return new ContextHashIndex(file, entries, racyMarginMs);
  }

  /** The index file for a context root under `dir`. */
  static fileFor(dir: string, root: string): string {
    return join(dir, `context-${createHash('sha256').update(resolve(root)).digest('hex').slice(0, 32)}.json`);
  }

  /** Loads the index of `root` from `dir` and marks it used now (its mtime orders trimDir and `gantry prune`). */
  static async open(dir: string, root: string, racyMarginMs = RACY_MARGIN_MS): Promise<ContextHashIndex> {
    const file = ContextHashIndex.fileFor(dir, root);
    const now = new Date();
    const [index] = await Promise.all([ContextHashIndex.load(file, racyMarginMs), utimes(file, now, now).catch(() => undefined)]);
    return index;
  }

  get size(): number {
    return this.entries.size;
  }

  lookup(absPath: string, st: Stats): string | undefined {
    const e = this.entries.get(absPath);
    if (!e) return undefined;
    const [size, mtimeMs, ino, ctimeMs, sha, hashedAt] = e;
    if (size !== st.size || mtimeMs !== st.mtimeMs || ino !== st.ino || ctimeMs !== st.ctimeMs) return undefined;
    const coarse = mtimeMs % 1000 === 0 && ctimeMs % 1000 === 0;
    const margin = coarse ? Math.max(this.racyMarginMs, COARSE_RACY_MARGIN_MS) : this.racyMarginMs;
    if (Math.max(mtimeMs, ctimeMs) >= hashedAt - margin) return undefined;
    return sha;
  }

  record(absPath: string, st: Stats, sha: string, hashedAtMs: number): void {
    if (this.entries.size >= MAX_INDEX_ENTRIES && !this.entries.has(absPath)) return;
    this.entries.set(absPath, [st.size, st.mtimeMs, st.ino, st.ctimeMs, sha, hashedAtMs]);
    this.changes++;
  }

  /** Whether entries were recorded since the last save. */
  get dirty(): boolean {
    return this.changes !== this.saved;
  }

  /** Writes the index atomically (a reader never sees half a file). Failures are ignored: it is a cache. */
  async save(file = this.file): Promise<void> {
    if (!file || !this.dirty) return;
    const changes = this.changes;
    const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
    try {
      // Private: content hashes would let another local user confirm a guess of a file's content.
      await mkdir(dirname(file), { recursive: true, mode: 0o700 });
      await writeFile(tmp, JSON.stringify({ version: INDEX_VERSION, entries: Object.fromEntries(this.entries) }), { mode: 0o600 });
      await rename(tmp, file);
      if (file === this.file) this.saved = Math.max(this.saved, changes);
    } catch {
      // a read-only cache dir only costs speed
      await rm(tmp, { force: true }).catch(() => undefined);
    }
  }

  /**
   * Keeps the `keep` most recently used index files of `dir` (by mtime, which `open` refreshes)
   * and removes the rest, so contexts that come and go (checkouts in fresh CI directories)
   * cannot fill the disk. Failures are ignored.
   */
  static async trimDir(dir: string, keep: number): Promise<number> {
    const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => INDEX_FILE.test(n) || INDEX_TEMP.test(n));
    if (names.length <= keep) return 0;
    const files = await Promise.all(names.map(async (n) => ({ path: join(dir, n), temp: INDEX_TEMP.test(n), mtime: (await lstat(join(dir, n)).catch(() => undefined))?.mtimeMs ?? 0 })));
    const hourAgo = Date.now() - 3_600_000;
    // Temp files left by a killed writer go once they are clearly not being written.
    const stale = files.filter((f) => f.temp && f.mtime < hourAgo);
    const indexes = files.filter((f) => !f.temp).sort((a, b) => b.mtime - a.mtime);
    const remove = [...stale, ...indexes.slice(keep)];
    await Promise.all(remove.map((f) => rm(f.path, { force: true }).catch(() => undefined)));
    return remove.length;
  }
}

/**
 * Files up to this size are read with blocking calls into one reused buffer: for the thousands of
 * small files of a typical context a thread-pool round trip and a stream per file cost several
 * times the read itself. Larger files stream, so a big file never stalls the event loop for long.
 */
const SYNC_READ_MAX = 256 * 1024;
let readBuffer: Buffer | undefined;

function hashFileSync(path: string): { sha: string; bytes: number } {
  const buf = (readBuffer ??= Buffer.allocUnsafe(SYNC_READ_MAX));
  const h = createHash('sha256');
  let bytes = 0;
  // Non-blocking open: a file swapped for a FIFO since the walk cannot block the whole process
  // (its stat identity no longer matches, so what is read here is never reused); regular files
  // ignore the flag.
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    // Until EOF, not until the size the walk saw: a file that grew is hashed whole.
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; bytes += n) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return { sha: h.digest('hex'), bytes };
}

async function hashFile(path: string): Promise<{ sha: string; bytes: number }> {
  const h = createHash('sha256');
  let bytes = 0;
  await pipeline(
    createReadStream(path),
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        h.update(chunk);
        bytes += chunk.length;
        cb();
      },
    }),
  );
  return { sha: h.digest('hex'), bytes };
}

/**
 * UTF-8 byte order (Go's and the tar writer's) without encoding: UTF-16 code units order like
 * UTF-8 bytes except surrogates against U+E000..U+FFFF, so only such a difference needs the bytes.
 */
function utf8Order(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return x < 0xd800 && y < 0xd800 ? x - y : Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
  }
  return a.length - b.length;
}

function sortByBytes(list: ContextFile[]): ContextFile[] {
  return list.sort((a, b) => utf8Order(a.path, b.path));
}

/**
 * Digests the files under `root` that a COPY/ADD reads (already filtered by .dockerignore and the
 * instruction's sources). Per file: path, type, mode, owner after --chown, size, content sha256,
 * symlink target. mtimes are left out: touching a file must not invalidate the cache.
 */
export async function contextDigest(root: string, files: Iterable<ContextFile> | AsyncIterable<ContextFile>, opts: ContextDigestOptions = {}): Promise<ContextDigestResult> {
  const absRoot = resolve(root);
  const index = opts.index ?? (opts.indexDir ? await ContextHashIndex.open(opts.indexDir, absRoot) : undefined);
  const owner = opts.owner ?? { uid: 0, gid: 0 };
  const collected: ContextFile[] = [];
  for await (const f of files as AsyncIterable<ContextFile>) collected.push(f);
  const list = sortByBytes(collected);

  const stats: ContextDigestStats = { files: list.length, hashed: 0, reused: 0, bytesHashed: 0 };
  const hashed = (abs: string, f: ContextFile, d: FileDigest, r: { sha: string; bytes: number }, startedAt: number) => {
    d.sha256 = r.sha;
    stats.hashed++;
    stats.bytesHashed += r.bytes;
    index?.record(abs, f.stat, r.sha, startedAt);
  };
  const failed = (err: unknown, f: ContextFile) => wrapError(err, `hashing build context file ${f.path}`, 'CONTEXT_INVALID');

  // One synchronous pass serves index hits, symlinks and small files; only large files left
  // over are read asynchronously, a few at a time.
  const out: FileDigest[] = new Array<FileDigest>(list.length);
  const large: number[] = [];
  // Paths are relative and clean (ContextFile), so concatenation is join() without its cost.
  const prefix = absRoot.endsWith('/') ? absRoot : `${absRoot}/`;
  for (let i = 0; i < list.length; i++) {
    const f = list[i]!;
    const abs = prefix + f.path;
    const d: FileDigest = { path: f.path, type: f.type, mode: f.stat.mode & 0o7777, uid: owner.uid, gid: owner.gid, size: f.type === 'file' ? f.stat.size : 0 };
    out[i] = d;
    try {
      if (f.type === 'file') {
        const known = index?.lookup(abs, f.stat);
        if (known) {
          d.sha256 = known;
          stats.reused++;
        } else if (f.stat.size <= SYNC_READ_MAX) {
          const startedAt = Date.now();
          hashed(abs, f, d, hashFileSync(abs), startedAt);
        } else large.push(i);
      } else if (f.type === 'symlink') {
        d.linkname = readlinkSync(abs);
      }
    } catch (err) {
      throw failed(err, f);
    }
  }
  const limit = limiter(opts.concurrency ?? 8);
  await Promise.all(
    large.map((i) =>
      limit(async () => {
        const f = list[i]!;
        const abs = prefix + f.path;
        const startedAt = Date.now();
        try {
          hashed(abs, f, out[i]!, await hashFile(abs), startedAt);
        } catch (err) {
          throw failed(err, f);
        }
      }),
    ),
  );

  const digest = encodeDigest(out);
  if (!opts.index) await index?.save();
  return { digest, files: out, stats };
}

/**
 * FramedHash's encoding (framing.ts), byte for byte, built as latin1 text (one char per byte) and
 * hashed in large chunks: a hash update or buffer write per value costs more than everything else
 * done per file. A short ASCII value's frame is three zero bytes, its length (one byte), the text.
 */
const SHORT_ASCII = /^[\x00-\x7f]{0,255}$/;

function frame(v: string): string {
  if (SHORT_ASCII.test(v)) return '\0\0\0' + String.fromCharCode(v.length) + v;
  const bytes = Buffer.from(v, 'utf8');
  const n = bytes.length;
  return String.fromCharCode((n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255) + bytes.toString('latin1');
}

function u32(n: number): string {
  return String.fromCharCode((n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255);
}

const NAME = { path: frame('path'), type: frame('type'), mode: frame('mode'), uid: frame('uid'), gid: frame('gid'), size: frame('size'), sha256: frame('sha256'), linkname: frame('linkname') };
const EMPTY = frame('');

/** `sha256:` of the FramedHash encoding documented in docs/cache.md (gantry-context-digest/v1). */
function encodeDigest(out: readonly FileDigest[]): string {
  const h = createHash('sha256');
  let text = frame('gantry-context-digest/v1') + frame('files') + u32(out.length);
  for (const d of out) {
    text +=
      NAME.path + frame(d.path) + NAME.type + frame(d.type) + NAME.mode + frame(String(d.mode)) + NAME.uid + frame(String(d.uid)) + NAME.gid + frame(String(d.gid)) +
      NAME.size + frame(String(d.size)) + NAME.sha256 + (d.sha256 === undefined ? EMPTY : frame(d.sha256)) + NAME.linkname + (d.linkname === undefined ? EMPTY : frame(d.linkname));
    if (text.length >= 1 << 16) {
      h.update(text, 'latin1');
      text = '';
    }
  }
  h.update(text, 'latin1');
  return `sha256:${h.digest('hex')}`;
}
