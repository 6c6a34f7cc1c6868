/**
 * The base-image cache of Kaniko's `--cache-dir` (filled by `gantry warmer`): whole base images
 * kept on local disk so a build reads their layers from there instead of the registry.
 *
 * Layout under `<cache-dir>/gantry/` (Kaniko's own `sha256:<hex>` tarballs may sit next to it):
 *   images/<alg>-<hex>/     one OCI image layout per cached image, named by the digest of its
 *                           (single-platform) manifest; it appears by an atomic rename, complete
 *   refs/<sha256>.json      `{key, digest}`: which manifest a tag (`registry/repo:tag|os/arch`) or an
 *                           index digest (`sha256:…|os/arch`) pointed at when it was warmed
 *   tmp/                    warms in progress
 *
 * Lookups follow Kaniko: a digest reference is answered from disk alone; a tag is first resolved
 * by the registry (so a moved tag is never served stale) and only the resolved digest is looked up.
 * Unlike Kaniko, a tag whose registry cannot be reached at all falls back to the digest recorded at
 * warm time, with a warning, so a warmed build also works offline. Entries older than the TTL
 * (index.json mtime, like Kaniko's file mtime) and unreadable entries are misses; a build then
 * pulls from the registry as if there were no cache.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { writeFileAtomic } from '../oci/blobfile.js';
import { copyImage } from '../oci/copy.js';
import { blobPath } from '../oci/descriptor.js';
import { OciLayoutReader, OciLayoutWriter } from '../oci/layout.js';
import { parseManifest } from '../oci/manifest.js';
import { formatPlatform, normalizePlatform, selectManifest } from '../oci/platform.js';
import type { ImageReader } from '../oci/store.js';
import type { Descriptor, Platform, RawManifest } from '../oci/types.js';
import { formatReference, type Reference } from '../registry/reference.js';
import { GantryError, wrapError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { DEFAULT_CACHE_TTL_MS } from './store.js';

/** Kaniko's default `--cache-dir`. */
export const DEFAULT_BASE_CACHE_DIR = '/cache';
const ROOT = 'gantry';

export interface BaseImageCacheOptions {
  /** Kaniko's `--cache-dir`. */
  dir: string;
  /** Entries older than this are misses (Kaniko's `--cache-ttl`); default 336h. 0 = never expire. */
  ttlMs?: number;
  logger?: Logger;
  /** Clock, for tests. */
  now?: () => number;
}

/** A cached image: read it like any other image; blobs are verified as they stream. */
export interface CachedBaseImage {
  digest: string;
  manifestRaw: RawManifest;
  reader: ImageReader;
  /** The entry's directory (an OCI layout). */
  dir: string;
}

export type BaseImageLookup =
  | { hit: CachedBaseImage }
  /** `root` is the manifest (or index) the registry answered for a tag, so the caller need not ask again. */
  | { hit?: undefined; root?: RawManifest };

export interface WarmResult {
  reference: string;
  digest: string;
  /** False when a fresh, intact entry was already there (Kaniko: "Image already in cache"). */
  downloaded: boolean;
  dir: string;
}

const platformKey = (p: Platform) => formatPlatform(normalizePlatform(p));
const tagKey = (ref: Reference, p: Platform) => `${ref.registry}/${ref.repository}:${ref.tag ?? 'latest'}|${platformKey(p)}`;
const digestKey = (digest: string, p: Platform) => `${digest}|${platformKey(p)}`;
const isErrno = (err: unknown, ...codes: string[]) => codes.includes((err as NodeJS.ErrnoException)?.code ?? '');

/** The image manifest a root (manifest or index) stands for on `platform`. */
function platformDigest(root: RawManifest, platform: Platform, what: string): string {
  const parsed = parseManifest(root, { what });
  return parsed.kind === 'index' ? selectManifest(parsed.index, platform, { what }).digest : root.digest;
}

export class BaseImageCache {
  readonly dir: string;
  private readonly ttlMs: number;
  private readonly logger: Logger;
  private readonly now: () => number;

  constructor(opts: BaseImageCacheOptions) {
    this.dir = resolve(opts.dir);
    this.ttlMs = opts.ttlMs ?? DEFAULT_CACHE_TTL_MS;
    this.logger = opts.logger ?? silentLogger;
    this.now = opts.now ?? Date.now;
  }

  private get root(): string {
    return join(this.dir, ROOT);
  }

  /** Directory of the entry for an image manifest digest. */
  entryDir(digest: string): string {
    return join(this.root, 'images', digest.replace(':', '-'));
  }

  private refPath(key: string): string {
    return join(this.root, 'refs', `${createHash('sha256').update(key).digest('hex')}.json`);
  }

  private async readRef(key: string): Promise<string | undefined> {
    try {
      const doc = JSON.parse(await readFile(this.refPath(key), 'utf8')) as { key?: unknown; digest?: unknown };
      return doc.key === key && typeof doc.digest === 'string' ? doc.digest : undefined;
    } catch {
      return undefined;
    }
  }

  private async writeRef(key: string, digest: string): Promise<void> {
    const path = this.refPath(key);
    await mkdir(join(this.root, 'refs'), { recursive: true });
    await writeFileAtomic(path, Buffer.from(JSON.stringify({ key, digest }) + '\n'));
  }

  /**
   * The entry for an image manifest digest, if present, fresh and intact (manifest digest
   * verified, every blob present at its size). A damaged entry is reported and skipped: the
   * build falls back to the registry, as Kaniko does when its cached tarball cannot be read.
   */
  async open(digest: string, what = digest): Promise<CachedBaseImage | undefined> {
    const dir = this.entryDir(digest);
    const st = await stat(join(dir, 'index.json')).catch((err: unknown) => {
      // An unreadable cache directory makes the build slower, never fail it.
      if (!isErrno(err, 'ENOENT', 'ENOTDIR')) this.logger.log('warn', `base image cache entry ${dir} cannot be read (${(err as Error).message}); pulling ${what} from the registry`);
      return undefined;
    });
    if (!st) return undefined;
    if (this.ttlMs > 0 && st.mtimeMs + this.ttlMs < this.now()) {
      this.logger.log('info', `base image cache: ${what} (${digest}) was warmed ${new Date(st.mtimeMs).toISOString()}, older than the cache TTL; not using it`);
      return undefined;
    }
    try {
      const layout = await OciLayoutReader.open(dir, digest);
      const raw = await layout.getManifest(digest);
      const parsed = parseManifest(raw, { what: `manifest ${digest}` });
      if (parsed.kind !== 'manifest') throw new GantryError('LAYOUT_INVALID', 'the entry holds an index, not an image manifest');
      for (const desc of [parsed.manifest.config, ...parsed.manifest.layers]) {
        if (desc.data !== undefined) continue;
        const size = await stat(join(dir, blobPath(desc.digest))).then((s) => s.size, () => undefined);
        if (size !== desc.size) throw new GantryError('LAYOUT_INVALID', `blob ${desc.digest} is ${size === undefined ? 'missing' : `${size} bytes, expected ${desc.size}`}`);
      }
      return { digest, manifestRaw: raw, reader: withCorruptionHint(layout, dir), dir };
    } catch (err) {
      this.logger.log('warn', `base image cache entry ${dir} for ${what} is unusable (${(err as Error).message}); ignoring it and pulling from the registry`, { dir });
      return undefined;
    }
  }

  /**
   * Finds `reference` for `platform`. A digest reference is looked up without the registry; a tag
   * is resolved by `remote` first (one manifest request, no blob), falling back to the digest
   * recorded at warm time only when the registry cannot be reached.
   */
  async find(reference: Reference, platform: Platform, remote: ImageReader, signal?: AbortSignal): Promise<BaseImageLookup> {
    const name = formatReference(reference);
    if (reference.digest) {
      const direct = await this.open(reference.digest, name);
      if (direct) return { hit: direct };
      const child = await this.readRef(digestKey(reference.digest, platform));
      const viaIndex = child ? await this.open(child, name) : undefined;
      return viaIndex ? { hit: viaIndex } : {};
    }
    let root: RawManifest;
    try {
      root = await remote.getManifest(undefined, signal);
    } catch (err) {
      if (!(err instanceof GantryError && err.code === 'REGISTRY_UNREACHABLE')) throw err;
      const recorded = await this.readRef(tagKey(reference, platform));
      const entry = recorded ? await this.open(recorded, name) : undefined;
      if (!entry) throw err;
      this.logger.log('warn', `${name}: the registry cannot be reached (${err.message}); using ${recorded}, which the tag named when it was warmed`);
      return { hit: entry };
    }
    const hit = await this.open(platformDigest(root, platform, `manifest of ${name}`), name);
    return hit ? { hit } : { root };
  }

  /**
   * Downloads `reference` (one platform of it) into the cache unless a fresh, intact entry is
   * there already (or `force`). The entry is assembled in tmp/ and renamed into place, so a build
   * reading the cache at the same time sees the old entry, the new one, or none, never half.
   */
  async warm(reference: Reference, platform: Platform, remote: ImageReader, opts: { force?: boolean; signal?: AbortSignal } = {}): Promise<WarmResult> {
    const name = formatReference(reference);
    const root = await remote.getManifest(undefined, opts.signal);
    const rootIsIndex = parseManifest(root, { what: `manifest of ${name}` }).kind === 'index';
    let digest = platformDigest(root, platform, `manifest of ${name}`);
    let downloaded = false;
    if (opts.force || !(await this.open(digest, name))) {
      await mkdir(join(this.root, 'tmp'), { recursive: true });
      const work = join(this.root, 'tmp', `warm-${randomBytes(6).toString('hex')}`);
      try {
        const writer = await OciLayoutWriter.create(work);
        // The root as read above: a tag moved meanwhile still yields one consistent image.
        const pinned: ImageReader = { name: remote.name, getManifest: async (ref, signal) => (ref === undefined ? root : remote.getManifest(ref, signal)), getManifestByDescriptor: (d, s) => remote.getManifestByDescriptor(d, s), openBlob: (d, s) => remote.openBlob(d, s) };
        const copied = await copyImage(pinned, undefined, writer, { tags: [name], platform, ...(opts.signal ? { signal: opts.signal } : {}) });
        await writer.commit();
        digest = copied.digest;
        await this.install(work, this.entryDir(digest));
        downloaded = true;
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    }
    if (reference.tag !== undefined) await this.writeRef(tagKey(reference, platform), digest);
    if (rootIsIndex) await this.writeRef(digestKey(root.digest, platform), digest);
    return { reference: name, digest, downloaded, dir: this.entryDir(digest) };
  }

  /** Puts a finished entry in place, replacing an old one (expired, damaged or forced) atomically enough. */
  private async install(work: string, final: string): Promise<void> {
    await mkdir(join(this.root, 'images'), { recursive: true });
    try {
      await rename(work, final);
      return;
    } catch (err) {
      if (!isErrno(err, 'ENOTEMPTY', 'EEXIST')) throw wrapError(err, `installing base image cache entry ${final}`);
    }
    // The same digest means the same content: swap the new entry in and drop the old one.
    const old = `${work}-old`;
    await rename(final, old).catch((err: unknown) => {
      if (!isErrno(err, 'ENOENT')) throw wrapError(err, `replacing base image cache entry ${final}`);
    });
    await rename(work, final).catch((err: unknown) => {
      // Another warmer installed the same digest in between: the same content, so theirs will do.
      if (!isErrno(err, 'ENOTEMPTY', 'EEXIST')) throw wrapError(err, `installing base image cache entry ${final}`);
    });
    await rm(old, { recursive: true, force: true });
  }
}

/** Blob errors from a cache entry say which entry is damaged and how to repair it. */
function withCorruptionHint(layout: OciLayoutReader, dir: string): ImageReader {
  const hint = `the base image cache entry ${dir} is damaged: delete it, or re-run \`gantry warmer --force\` for this image`;
  const tag = (err: unknown) => {
    if (err instanceof GantryError && (err.code === 'DIGEST_MISMATCH' || err.code === 'SIZE_MISMATCH' || err.code === 'NOT_FOUND' || err.code === 'IO')) err.details.hint ??= hint;
  };
  return {
    name: `${layout.name} (base image cache)`,
    getManifest: (ref) => layout.getManifest(ref),
    getManifestByDescriptor: (desc) => layout.getManifestByDescriptor(desc),
    async openBlob(desc: Descriptor): Promise<Readable> {
      try {
        const stream = await layout.openBlob(desc);
        // Runs before the consumer's own handlers: they see the error with the hint.
        stream.prependListener('error', tag);
        return stream;
      } catch (err) {
        tag(err);
        throw err;
      }
    },
  };
}
