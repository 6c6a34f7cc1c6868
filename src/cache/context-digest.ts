/**
 * Content digest of the context files a COPY/ADD reads, for its cache key. Hashing every byte of
 * a large context on every build is what made Kaniko's COPY caching slow, so file hashes are
 * remembered in an on-disk index keyed by stat identity (size, mtime, inode, ctime): an unchanged
 * file is not read again. ctime cannot be set from user space, so a file rewritten with its old
 * mtime still changes ctime and is re-hashed.
 */
import { createHash } from 'node:crypto';
import { createReadStream, type Stats } from 'node:fs';
import { mkdir, readFile, readlink, rename, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { wrapError } from '../util/errors.js';
import { limiter } from '../util/limit.js';
import { byteCompare, FramedHash } from './framing.js';

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
/** Entries kept at most; a context larger than this re-hashes the overflow. */
const MAX_INDEX_ENTRIES = 500_000;

type IndexEntry = [size: number, mtimeMs: number, ino: number, ctimeMs: number, sha256: string, hashedAtMs: number];

/** path (absolute) -> stat identity + content hash. */
export class ContextHashIndex {
  private dirty = false;

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
      const doc = JSON.parse(await readFile(file, 'utf8')) as { version?: unknown; entries?: unknown };
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

  get size(): number {
    return this.entries.size;
  }

  lookup(absPath: string, st: Stats): string | undefined {
    const e = this.entries.get(absPath);
    if (!e) return undefined;
    const [size, mtimeMs, ino, ctimeMs, sha, hashedAt] = e;
    if (size !== st.size || mtimeMs !== st.mtimeMs || ino !== st.ino || ctimeMs !== st.ctimeMs) return undefined;
    if (Math.max(mtimeMs, ctimeMs) >= hashedAt - this.racyMarginMs) return undefined;
    return sha;
  }

  record(absPath: string, st: Stats, sha: string, hashedAtMs: number): void {
    if (this.entries.size >= MAX_INDEX_ENTRIES && !this.entries.has(absPath)) return;
    this.entries.set(absPath, [st.size, st.mtimeMs, st.ino, st.ctimeMs, sha, hashedAtMs]);
    this.dirty = true;
  }

  /** Writes the index atomically (a reader never sees half a file). Failures are ignored: it is a cache. */
  async save(file = this.file): Promise<void> {
    if (!file || !this.dirty) return;
    try {
      await mkdir(dirname(file), { recursive: true });
      const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
      await writeFile(tmp, JSON.stringify({ version: INDEX_VERSION, entries: Object.fromEntries(this.entries) }));
      await rename(tmp, file);
      this.dirty = false;
    } catch {
      // a read-only cache dir only costs speed
    }
  }
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
 * Digests the files under `root` that a COPY/ADD reads (already filtered by .dockerignore and the
 * instruction's sources). Per file: path, type, mode, owner after --chown, size, content sha256,
 * symlink target. mtimes are left out: touching a file must not invalidate the cache.
 */
export async function contextDigest(root: string, files: Iterable<ContextFile> | AsyncIterable<ContextFile>, opts: ContextDigestOptions = {}): Promise<ContextDigestResult> {
  const absRoot = resolve(root);
  const index = opts.index ?? (opts.indexDir ? await ContextHashIndex.load(ContextHashIndex.fileFor(opts.indexDir, absRoot)) : undefined);
  const owner = opts.owner ?? { uid: 0, gid: 0 };
  const list: ContextFile[] = [];
  for await (const f of files as AsyncIterable<ContextFile>) list.push(f);
  list.sort((a, b) => byteCompare(a.path, b.path));

  const stats: ContextDigestStats = { files: list.length, hashed: 0, reused: 0, bytesHashed: 0 };
  const limit = limiter(opts.concurrency ?? 8);
  const out: FileDigest[] = await Promise.all(
    list.map((f) =>
      limit(async (): Promise<FileDigest> => {
        const abs = join(absRoot, f.path);
        const d: FileDigest = { path: f.path, type: f.type, mode: f.stat.mode & 0o7777, uid: owner.uid, gid: owner.gid, size: f.type === 'file' ? f.stat.size : 0 };
        try {
          if (f.type === 'file') {
            const known = index?.lookup(abs, f.stat);
            if (known) {
              d.sha256 = known;
              stats.reused++;
            } else {
              const startedAt = Date.now();
              const { sha, bytes } = await hashFile(abs);
              d.sha256 = sha;
              stats.hashed++;
              stats.bytesHashed += bytes;
              index?.record(abs, f.stat, sha, startedAt);
            }
          } else if (f.type === 'symlink') {
            d.linkname = await readlink(abs);
          }
        } catch (err) {
          throw wrapError(err, `hashing build context file ${f.path}`, 'CONTEXT_INVALID');
        }
        return d;
      }),
    ),
  );

  const h = new FramedHash();
  h.value('gantry-context-digest/v1');
  h.list('files', out, (d, hh) => {
    hh.field('path', d.path).field('type', d.type).int('mode', d.mode).int('uid', d.uid).int('gid', d.gid).int('size', d.size);
    hh.field('sha256', d.sha256 ?? '').field('linkname', d.linkname ?? '');
  });
  if (!opts.index) await index?.save();
  return { digest: `sha256:${h.hex()}`, files: out, stats };
}
