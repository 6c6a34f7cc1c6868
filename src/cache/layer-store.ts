/**
 * Unpacked base layers kept across builds, one directory per diffID: the second build FROM the
 * same base unpacks nothing (Kaniko unpacks every base layer on every build, its largest fixed
 * cost). A directory is complete by construction: it is unpacked under a temporary name and
 * renamed into place, so existence is the only state there is (no refcounts, no lock files).
 *
 * Callers treat a layer directory as read-only (an overlay lowerdir, or a source to copy from).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { PassThrough, Transform, type Readable } from 'node:stream';
import { decompressAuto } from '../archive/compression.js';
import { VerifyingStream, parseDigest } from '../util/digest.js';
import { GantryError, wrapError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { silentLogger } from '../util/logger.js';

/**
 * Unpacks an uncompressed layer tar stream into an empty directory. The build passes src/fs's
 * unpacker (cache may not import fs); it must consume the whole stream. What it returns, when
 * not undefined, is kept next to the layer as JSON (`notes`): what the directory alone cannot
 * say, such as the layer's whiteouts, which unpacking into an empty directory drops.
 */
export type UnpackFn = (dir: string, tar: Readable, signal?: AbortSignal) => Promise<unknown>;

/** `~/.cache/gantry/layers`, or `$XDG_CACHE_HOME/gantry/layers`. */
export function defaultLayerStoreDir(env: NodeJS.ProcessEnv): string {
  const base = env.XDG_CACHE_HOME || join(env.HOME || homedir(), '.cache');
  return join(base, 'gantry', 'layers');
}

export interface LayerStoreOptions {
  unpack: UnpackFn;
  /** Evict least recently used layers beyond this many bytes (uncompressed tar size); default unlimited. */
  maxBytes?: number;
  logger?: Logger;
}

export interface StoredLayerInfo {
  diffId: string;
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

const SIZE_SUFFIX = '.size';
const NOTES_SUFFIX = '.json';
const TMP_PREFIX = '.tmp-';
const TRASH_PREFIX = '.trash-';

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

  private nameOf(diffId: string): string {
    const { algorithm, encoded } = parseDigest(diffId);
    return algorithm === 'sha256' ? encoded : `${algorithm}-${encoded}`;
  }

  /** The directory of a layer if it is unpacked already (touching it as used), else undefined. */
  async lookup(diffId: string): Promise<string | undefined> {
    const path = join(this.dir, this.nameOf(diffId));
    const exists = await stat(path).then((s) => s.isDirectory(), () => false);
    if (!exists) return undefined;
    await this.touch(path);
    this.usedHere.add(this.nameOf(diffId));
    return path;
  }

  /**
   * The directory holding the layer's files, unpacking it first if no build did yet. `open` yields
   * the layer blob (any compression); its uncompressed content is verified against `diffId`.
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

  /** What the unpacker returned for the layer stored at `path`; undefined when it returned nothing (or it is unreadable). */
  async notes(path: string): Promise<unknown> {
    const text = await readFile(`${path}${NOTES_SUFFIX}`, 'utf8').catch(() => undefined);
    if (text === undefined) return undefined;
    try {
      return JSON.parse(text) as unknown;
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
      await mkdir(tmp, { recursive: true });
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
      const notes = await unpack(tmp, tar, signal);
      // An unpacker may stop at the end-of-archive marker: let the padding through so the digest covers every byte.
      tar.resume();
      await verified;
      // Side files first: a layer directory in place always has them.
      await writeFile(`${final}${SIZE_SUFFIX}`, String(counter.bytes));
      if (notes !== undefined) await writeFile(`${final}${NOTES_SUFFIX}`, JSON.stringify(notes));
      else await rm(`${final}${NOTES_SUFFIX}`, { force: true });
      try {
        await rename(tmp, final);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        // Another build unpacked the same layer meanwhile: theirs is as good as ours.
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
        await this.remove(tmp);
      }
      // A `./` entry in the layer may have set the directory's mtime (often to 1970): mark it used now.
      await this.touch(final);
      this.usedHere.add(name);
      this.logger.log('debug', `layer store: unpacked ${diffId} (${counter.bytes} bytes)`);
    } catch (err) {
      await this.remove(tmp).catch(() => undefined);
      throw wrapError(err, `unpacking layer ${diffId} into the layer store ${this.dir}`);
    }
    if (this.opts.maxBytes !== undefined) await this.prune({ maxBytes: this.opts.maxBytes }).catch((err: Error) => this.logger.log('warn', `layer store: eviction failed: ${err.message}`));
    return final;
  }

  private async touch(path: string): Promise<void> {
    const now = new Date();
    await utimes(path, now, now).catch(() => undefined);
  }

  /** Every complete layer with its size and last use (directory mtime, bumped on each use). */
  async list(): Promise<StoredLayerInfo[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: StoredLayerInfo[] = [];
    for (const name of names) {
      if (name.startsWith('.') || name.endsWith(SIZE_SUFFIX) || name.endsWith(NOTES_SUFFIX)) continue;
      const path = join(this.dir, name);
      const st = await stat(path).catch(() => undefined);
      if (!st?.isDirectory()) continue;
      const bytes = Number(await readFile(`${path}${SIZE_SUFFIX}`, 'utf8').catch(() => '0')) || 0;
      const diffId = /^[a-f0-9]{64}$/.test(name) ? `sha256:${name}` : name.replace('-', ':');
      out.push({ diffId, path, bytes, lastUsed: st.mtime });
    }
    return out;
  }

  /**
   * Removes layers: all, those unused for `olderThanMs`, then least recently used ones until the
   * rest fits in `maxBytes`. Layers used by this process are kept (a build may be reading them),
   * except with `all`. Leftovers of interrupted unpacks are always removed.
   */
  async prune(opts: PruneOptions = {}): Promise<PruneResult> {
    const now = (opts.now ?? new Date()).getTime();
    const result: PruneResult = { removed: [], freedBytes: 0 };
    const names = await readdir(this.dir).catch(() => [] as string[]);
    for (const n of names) if (n.startsWith(TMP_PREFIX) || n.startsWith(TRASH_PREFIX)) await this.remove(join(this.dir, n)).catch(() => undefined);

    const layers = (await this.list()).sort((a, b) => a.lastUsed.getTime() - b.lastUsed.getTime());
    const drop = async (l: StoredLayerInfo) => {
      await this.remove(l.path);
      await rm(`${l.path}${SIZE_SUFFIX}`, { force: true });
      await rm(`${l.path}${NOTES_SUFFIX}`, { force: true });
      result.removed.push(l.diffId);
      result.freedBytes += l.bytes;
    };
    let total = layers.reduce((s, l) => s + l.bytes, 0);
    for (const l of layers) {
      const pinned = !opts.all && this.usedHere.has(this.nameOf(l.diffId));
      if (pinned) continue;
      const old = opts.olderThanMs !== undefined && now - l.lastUsed.getTime() > opts.olderThanMs;
      const over = opts.maxBytes !== undefined && total > opts.maxBytes;
      if (opts.all || old || over) {
        await drop(l);
        total -= l.bytes;
      }
    }
    if (result.removed.length) this.logger.log('debug', `layer store: removed ${result.removed.length} layer(s), ${result.freedBytes} bytes`);
    return result;
  }

  /** Renames away first, so a half-deleted layer is never mistaken for a complete one. */
  private async remove(path: string): Promise<void> {
    const trash = join(this.dir, `${TRASH_PREFIX}${randomBytes(6).toString('hex')}`);
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
