/**
 * Unpacked base layers kept across builds, one entry per diffID: the second build FROM the same
 * base unpacks nothing (Kaniko unpacks every base layer on every build, its largest fixed cost).
 * An entry is a directory holding the layer's files (`tree/`), its uncompressed size (`size`) and
 * what the unpacker noted (`notes.json`). It is complete by construction: everything is written
 * under a temporary name and renamed into place in one step, so existence is the only state there
 * is (no refcounts, no lock files). An entry missing a part (left by an older version) is damaged:
 * it is removed and unpacked again.
 *
 * The store and its entries are private to their owner (0700): base images hold setuid binaries.
 * Callers treat a layer's files as read-only (an overlay lowerdir, or a source to link from).
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { PassThrough, Transform, type Readable } from 'node:stream';
import { decompressAuto } from '../archive/compression.js';
import { VerifyingStream, parseDigest } from '../util/digest.js';
import { GantryError, wrapError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { silentLogger } from '../util/logger.js';

/**
 * Unpacks an uncompressed layer tar stream into an empty directory. The build passes src/fs's
 * unpacker (cache may not import fs); it must consume the whole stream. What it returns, when
 * not undefined, is kept with the layer as JSON (`notes`): what the directory alone cannot say,
 * such as the layer's whiteouts, which unpacking into an empty directory drops.
 */
export type UnpackFn = (dir: string, tar: Readable, signal?: AbortSignal) => Promise<unknown>;

/** `~/.cache/gantry/layers`, or `$XDG_CACHE_HOME/gantry/layers`. */
export function defaultLayerStoreDir(env: NodeJS.ProcessEnv): string {
  const base = env.XDG_CACHE_HOME || join(env.HOME || homedir(), '.cache');
  return join(base, 'gantry', 'layers');
}

export interface LayerStoreOptions {
  unpack: UnpackFn;
  /** Store a layer only the second time this machine meets it (seenBefore); default: the first time. */
  storeOnSecondSight?: boolean;
  /** Evict least recently used layers beyond this many bytes (uncompressed tar size); default unlimited. */
  maxBytes?: number;
  logger?: Logger;
}

export interface StoredLayerInfo {
  diffId: string;
  /** The layer's files. */
  path: string;
  /** Uncompressed tar size of the layer: the measure eviction uses. */
  bytes: number;
  lastUsed: Date;
}

export interface PruneOptions {
  /** Remove every layer. */
  all?: boolean;
  /** Remove layers not used for this long. */
  olderThanMs?: number;
  /** Then evict least recently used layers until the total fits. */
  maxBytes?: number;
  now?: Date;
}

export interface PruneResult {
  removed: string[];
  freedBytes: number;
}

const TREE = 'tree';
const SEEN_DIR = '.seen';
const SIZE_FILE = 'size';
const NOTES_FILE = 'notes.json';
const TMP_PREFIX = '.tmp-';
const TRASH_PREFIX = '.trash-';
/** Temporary and trash directories younger than this may belong to a build still running. */
export const STALE_TEMP_MS = 3_600_000;

/** Counts the bytes of the uncompressed tar as it flows to the unpacker. */
class ByteCounter extends Transform {
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null, data?: Buffer) => void): void {
    this.bytes += chunk.length;
    cb(null, chunk);
  }
}

export class UnpackedLayerStore {
  readonly dir: string;
  readonly logger: Logger;
  private readonly inFlight = new Map<string, Promise<string>>();
  /** Layers this process handed out: never evicted by it, so a running build keeps its lowerdirs. */
  private readonly usedHere = new Set<string>();
  private created?: Promise<void>;

  constructor(
    dir: string,
    private readonly opts: LayerStoreOptions,
  ) {
    this.dir = resolve(dir);
    this.logger = opts.logger ?? silentLogger;
  }

  /** The size the store is kept under after each unpack; undefined = unlimited. */
  get maxBytes(): number | undefined {
    return this.opts.maxBytes;
  }

  /** Creates the store directory (0700), or makes an existing one of ours 0700; once per process. */
  prepare(): Promise<void> {
    this.created ??= (async () => {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      const st = await stat(this.dir);
      if ((st.mode & 0o077) !== 0 && st.uid === process.getuid?.()) await chmod(this.dir, 0o700);
    })();
    return this.created;
  }

  /**
   * Whether this machine met the layer before (a marker under `.seen/`), marking it now if not.
   * Builds store a layer the second time they meet it: unpacking into the store and linking into
   * a root costs about twice a plain unpack, which an ephemeral machine (a CI runner that builds
   * once) would pay for nothing.
   */
  async seenBefore(diffId: string): Promise<boolean> {
    const marker = join(this.dir, SEEN_DIR, this.nameOf(diffId));
    if (await stat(marker).then(() => true, () => false)) return true;
    await mkdir(join(this.dir, SEEN_DIR), { recursive: true, mode: 0o700 }).catch(() => undefined);
    await writeFile(marker, '').catch(() => undefined);
    return false;
  }

  get storeOnSecondSight(): boolean {
    return this.opts.storeOnSecondSight === true;
  }

  private nameOf(diffId: string): string {
    const { algorithm, encoded } = parseDigest(diffId);
    return algorithm === 'sha256' ? encoded : `${algorithm}-${encoded}`;
  }

  /** Whether an entry has every part; an entry is never changed once in place, so this is final. */
  private async complete(entry: string): Promise<boolean> {
    return (await this.sizeOf(entry)) !== undefined;
  }

  /** The entry's size when every part is there, else undefined (damaged). */
  private async sizeOf(entry: string): Promise<number | undefined> {
    const [tree, notes, size] = await Promise.all([
      stat(join(entry, TREE)).catch(() => undefined),
      stat(join(entry, NOTES_FILE)).catch(() => undefined),
      readFile(join(entry, SIZE_FILE), 'utf8').catch(() => undefined),
    ]);
    const bytes = size === undefined || size.trim() === '' ? NaN : Number(size);
    return tree?.isDirectory() && notes?.isFile() && Number.isSafeInteger(bytes) && bytes >= 0 ? bytes : undefined;
  }

  /**
   * The directory of a layer's files if it is stored (touching it as used), else undefined. A
   * damaged entry (a part missing) is removed on the way, so the layer is unpacked again.
   */
  async lookup(diffId: string): Promise<string | undefined> {
    const name = this.nameOf(diffId);
    const entry = join(this.dir, name);
    const st = await stat(entry).catch(() => undefined);
    if (!st) return undefined;
    if (!st.isDirectory() || !(await this.complete(entry))) {
      this.logger.log('debug', `layer store: ${diffId} is damaged (a part is missing); removing it`);
      await this.remove(entry);
      return undefined;
    }
    await this.touch(entry);
    this.usedHere.add(name);
    return join(entry, TREE);
  }

  /** Removes a stored layer the caller found unusable (its notes unreadable), so it is unpacked again. */
  async discard(diffId: string): Promise<void> {
    const name = this.nameOf(diffId);
    this.usedHere.delete(name);
    await this.remove(join(this.dir, name));
  }

  /**
   * The directory holding the layer's files, unpacking it first if no build did yet. `open` yields
   * the layer blob (any compression); its uncompressed content is verified against `diffId`, and
   * the promise resolves only once it was.
   * `unpack` replaces the store's unpacker for this layer (to see its entries on the way).
   */
  ensure(diffId: string, open: () => Promise<Readable>, signal?: AbortSignal, unpack?: UnpackFn): Promise<string> {
    const name = this.nameOf(diffId);
    const running = this.inFlight.get(name);
    if (running) return running;
    const p = this.ensureOnce(diffId, name, open, signal, unpack ?? this.opts.unpack).finally(() => this.inFlight.delete(name));
    this.inFlight.set(name, p);
    return p;
  }

  /** What the unpacker returned for the layer whose files are at `path`; undefined when it returned nothing (or it is unreadable). */
  async notes(path: string): Promise<unknown> {
    const text = await readFile(join(dirname(path), NOTES_FILE), 'utf8').catch(() => undefined);
    if (text === undefined) return undefined;
    try {
      return (JSON.parse(text) as unknown) ?? undefined;
    } catch {
      return undefined;
    }
  }

  private async ensureOnce(diffId: string, name: string, open: () => Promise<Readable>, signal: AbortSignal | undefined, unpack: UnpackFn): Promise<string> {
    const existing = await this.lookup(diffId);
    if (existing) return existing;
    const final = join(this.dir, name);
    const tmp = join(this.dir, `${TMP_PREFIX}${name.slice(0, 16)}-${randomBytes(6).toString('hex')}`);
    try {
      await this.prepare();
      await mkdir(tmp, { mode: 0o700 });
      await mkdir(join(tmp, TREE), { mode: 0o700 });
      const blob = await open();
      const { output } = await decompressAuto(blob);
      const counter = new ByteCounter();
      const verifier = new VerifyingStream({ digest: diffId }, `layer ${diffId} (uncompressed)`);
      // Errors anywhere along the chain must reach the unpacker, which reads the last stream.
      const tar = new PassThrough();
      for (const s of [blob, output, counter, verifier] as const) s.on('error', (e: Error) => tar.destroy(e));
      const verified = new Promise<void>((res, rej) => {
        verifier.once('error', rej);
        verifier.once('end', res);
      });
      verified.catch(() => undefined);
      output.pipe(counter).pipe(verifier).pipe(tar);
      const notes = await unpack(join(tmp, TREE), tar, signal);
      // An unpacker may stop at the end-of-archive marker: let the padding through so the digest covers every byte.
      tar.resume();
      await verified;
      // Every part inside the temporary directory: the rename puts them in place together.
      await writeFile(join(tmp, SIZE_FILE), String(counter.bytes));
      await writeFile(join(tmp, NOTES_FILE), JSON.stringify(notes ?? null));
      for (let attempt = 0; ; attempt++) {
        try {
          await rename(tmp, final);
          break;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
        }
        // Another build unpacked the same layer meanwhile: theirs is as good as ours, unless damaged.
        if (attempt > 0 || (await this.complete(final))) {
          await this.remove(tmp);
          break;
        }
        await this.remove(final);
      }
      await this.touch(final);
      this.usedHere.add(name);
      this.logger.log('debug', `layer store: unpacked ${diffId} (${counter.bytes} bytes)`);
    } catch (err) {
      await this.remove(tmp).catch(() => undefined);
      throw wrapError(err, `unpacking layer ${diffId} into the layer store ${this.dir}`);
    }
    if (this.opts.maxBytes !== undefined) await this.prune({ maxBytes: this.opts.maxBytes }).catch((err: Error) => this.logger.log('warn', `layer store: eviction failed: ${err.message}`));
    return join(final, TREE);
  }

  private async touch(path: string): Promise<void> {
    const now = new Date();
    await utimes(path, now, now).catch(() => undefined);
  }

  /** Every stored layer with its size and last use (entry mtime, bumped on each use); damaged ones have no size. */
  private async entries(): Promise<Array<StoredLayerInfo & { name: string; damaged: boolean }>> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: Array<StoredLayerInfo & { name: string; damaged: boolean }> = [];
    for (const name of names) {
      if (name.startsWith('.')) continue;
      const entry = join(this.dir, name);
      const st = await stat(entry).catch(() => undefined);
      if (!st?.isDirectory()) continue;
      const bytes = await this.sizeOf(entry);
      const diffId = /^[a-f0-9]{64}$/.test(name) ? `sha256:${name}` : name.replace('-', ':');
      out.push({ name, diffId, path: join(entry, TREE), bytes: bytes ?? 0, lastUsed: st.mtime, damaged: bytes === undefined });
    }
    return out;
  }

  /** Every complete layer with its size and last use. */
  async list(): Promise<StoredLayerInfo[]> {
    return (await this.entries()).filter((e) => !e.damaged).map(({ diffId, path, bytes, lastUsed }) => ({ diffId, path, bytes, lastUsed }));
  }

  /**
   * Removes layers: all, those unused for `olderThanMs`, then least recently used ones until the
   * rest fits in `maxBytes`. Layers used by this process are kept (a build may be reading them),
   * except with `all`. Damaged entries (their size unknown) are always removed, and so are
   * leftovers of interrupted unpacks once they are an hour old (younger ones may be another
   * build's unpack in progress).
   */
  async prune(opts: PruneOptions = {}): Promise<PruneResult> {
    const now = (opts.now ?? new Date()).getTime();
    const result: PruneResult = { removed: [], freedBytes: 0 };
    const names = await readdir(this.dir).catch(() => [] as string[]);
    for (const n of names) {
      const path = join(this.dir, n);
      if (n.startsWith(TMP_PREFIX) || n.startsWith(TRASH_PREFIX)) {
        // ctime: set by the rename into the trash, and not settable by a layer's `./` entry.
        const st = await stat(path).catch(() => undefined);
        if (st && now - Math.max(st.ctimeMs, st.mtimeMs) > STALE_TEMP_MS) await this.remove(path).catch(() => undefined);
      } else if (n.endsWith('.size') || n.endsWith('.json')) {
        // Side files of the layout before entries held their parts.
        await rm(path, { force: true }).catch(() => undefined);
      }
    }

    const all = await this.entries();
    for (const e of all.filter((x) => x.damaged && (opts.all || !this.usedHere.has(x.name)))) {
      await this.remove(join(this.dir, e.name));
      result.removed.push(e.diffId);
    }
    const layers = all.filter((x) => !x.damaged).sort((a, b) => a.lastUsed.getTime() - b.lastUsed.getTime());
    let total = layers.reduce((s, l) => s + l.bytes, 0);
    for (const l of layers) {
      const pinned = !opts.all && this.usedHere.has(l.name);
      if (pinned) continue;
      const old = opts.olderThanMs !== undefined && now - l.lastUsed.getTime() > opts.olderThanMs;
      const over = opts.maxBytes !== undefined && total > opts.maxBytes;
      if (opts.all || old || over) {
        await this.remove(join(this.dir, l.name));
        result.removed.push(l.diffId);
        result.freedBytes += l.bytes;
        total -= l.bytes;
      }
    }
    if (result.removed.length) this.logger.log('debug', `layer store: removed ${result.removed.length} layer(s), ${result.freedBytes} bytes`);
    return result;
  }

  /** Renames away first, so a half-deleted layer is never mistaken for a complete one. */
  private async remove(path: string): Promise<void> {
    const trash = join(this.dir, `${TRASH_PREFIX}${basename(path).slice(0, 16)}-${randomBytes(6).toString('hex')}`);
    try {
      await rename(path, trash);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    await rm(trash, { recursive: true, force: true, maxRetries: 2 }).catch((err: Error) => {
      throw new GantryError('IO', `removing ${trash}: ${err.message}`, { hint: 'remove it by hand; it is no longer used' });
    });
  }
}
