/**
 * The layer cache inside a build (Kaniko's --cache): each RUN (and, with copy layers on, each
 * COPY/ADD from the build context) gets a key from its inputs; a hit appends the stored layer by
 * descriptor without downloading it (its blob is opened only if a later step needs the files or
 * the export has to stream it), a miss runs the step and stores its layer in the background.
 * Unlike Kaniko, lookups continue after a miss: keys depend only on inputs, so a later step whose
 * inputs are unchanged can still hit (a changed parent key already makes every later key new).
 */
import { createHash } from 'node:crypto';
import { homedir } from 'node:os';
import { join, posix, relative } from 'node:path';
import type { Stats } from 'node:fs';
import type { Readable } from 'node:stream';
import {
  cacheKey,
  contextDigest,
  ContextHashIndex,
  defaultCacheRepo,
  openCacheRepo,
  openCacheStore,
  parseCacheSpec,
  parseGoDuration,
  type CacheEntry,
  type CacheKeyInput,
  type CacheStore,
  type CachedLayer,
  type ContextFile,
  type PutResult,
} from '../cache/index.js';
import type { IgnoreMatcher } from '../dockerfile/index.js';
import type { History, ImageConfig, Platform } from '../oci/types.js';
import type { RegistryClient, Repository } from '../registry/index.js';
import type { Logger } from '../util/logger.js';
import type { BuildOptions } from './options.js';
import type { ImageLayer } from './layers.js';
import { lstatInTree, matchSource, walkTree, type SourceTree } from './sources.js';

export interface BuildCache {
  store: CacheStore;
  runLayers: boolean;
  copyLayers: boolean;
  platform: Platform;
  /** Content hashes of context files remembered between builds; undefined = hash everything every time. */
  contextIndexes?: ContextIndexes;
}

/** `~/.cache/gantry/context-index`, or `$XDG_CACHE_HOME/gantry/context-index`. */
export function defaultContextIndexDir(env: NodeJS.ProcessEnv): string {
  const base = env.XDG_CACHE_HOME || join(env.HOME || homedir(), '.cache');
  return join(base, 'gantry', 'context-index');
}

/** Index files kept (one per context directory), most recently used first. */
export const CONTEXT_INDEXES_KEPT = 64;

/**
 * The on-disk hash indexes of the context directories a build copies from: each is loaded once,
 * on the first COPY/ADD keyed from it, shared by every later one, and written back (atomically)
 * after a digest that hashed something, so an unchanged context costs one small read per build.
 */
export class ContextIndexes {
  private readonly loaded = new Map<string, Promise<ContextHashIndex>>();

  constructor(
    readonly dir: string,
    readonly logger: Logger,
  ) {}

  index(root: string): Promise<ContextHashIndex> {
    let p = this.loaded.get(root);
    if (!p) {
      p = ContextHashIndex.open(this.dir, root);
      this.loaded.set(root, p);
    }
    return p;
  }

  async save(index: ContextHashIndex): Promise<void> {
    if (!index.dirty) return;
    await index.save();
    const removed = await ContextHashIndex.trimDir(this.dir, CONTEXT_INDEXES_KEPT);
    if (removed > 0) this.logger.log('debug', `context index: removed ${removed} least recently used index files from ${this.dir}`, {});
  }
}

/** An image layer backed by a cache entry: `open` fetches the blob only when called. */
export interface CachedImageLayer extends ImageLayer {
  /** Where the blob lives, so a push to the same registry mounts it. */
  source?: Repository;
}

export function layerFromCache(hit: CachedLayer): CachedImageLayer {
  const layer: CachedImageLayer = { descriptor: hit.layer, diffId: hit.diffId, open: (signal) => hit.open(signal) };
  if (hit.source) layer.source = hit.source;
  return layer;
}

/**
 * A step that ran but added no layer (a WORKDIR whose directory existed) is stored as an entry
 * flagged `noLayer`. The store needs a blob, so the entry points at an empty tar (1024 zero
 * bytes); that blob only lives in the cache and is never appended to an image.
 */
export const NO_LAYER_BLOB: Buffer = Buffer.alloc(1024);
const NO_LAYER_DIGEST = `sha256:${createHash('sha256').update(NO_LAYER_BLOB).digest('hex')}`;

export function noLayerEntry(history: History, platform: Platform): CacheEntry {
  // The cache image itself has the marker blob as its one layer, so its history must not say empty.
  const { empty_layer: _empty, ...stored } = history;
  return {
    layer: { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: NO_LAYER_DIGEST, size: NO_LAYER_BLOB.length },
    diffId: NO_LAYER_DIGEST,
    history: stored,
    configExtras: { noLayer: true },
    platform,
  };
}

export function isNoLayerEntry(hit: CachedLayer): boolean {
  return hit.configExtras?.['noLayer'] === true;
}

/** Config fields a step's result depends on beyond its own text (RUN's user, dir, shell). */
export function configFlags(config: ImageConfig): Record<string, string> {
  const c = config.config ?? {};
  return { workdir: c.WorkingDir ?? '', user: c.User ?? '', shell: JSON.stringify(c.Shell ?? []) };
}

/** The key of a step that added a layer without a cache key of its own: the chain follows the layer's content. */
export function chainKey(parent: string, platform: Platform, diffId: string): string {
  return cacheKey({ parent, platform, instruction: { kind: 'layer', args: [diffId] } });
}

export function stepKey(input: CacheKeyInput): string {
  return cacheKey(input);
}

/** The most recent history entry, the one the step just added. */
export function lastHistory(config: ImageConfig): History {
  const h = config.history ?? [];
  return h[h.length - 1] ?? {};
}

function fileType(st: Stats): ContextFile['type'] {
  return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
}

/**
 * contextDigest of exactly the files the sources match (after .dockerignore and --exclude),
 * named relative to the tree's root; owners as the copy will write them (--chown, else 0:0).
 * With the build cache's context index, files whose stat identity is unchanged since an earlier
 * build are not read again.
 */
export async function copiedFilesDigest(
  tree: SourceTree,
  sources: readonly string[],
  excludes: IgnoreMatcher | undefined,
  owner: { uid: number; gid: number } | undefined,
  cache?: BuildCache,
): Promise<string> {
  const files = new Map<string, ContextFile>();
  const add = (path: string, st: Stats) => {
    files.set(path, { path, type: fileType(st), stat: st });
  };
  for (const src of sources) {
    for (const m of await matchSource(tree, src)) {
      const entry = await lstatInTree(tree, m, true);
      if (!entry) continue;
      if (excludes && m !== '' && !entry.stat.isDirectory() && excludes.matches(posix.basename(m))) continue;
      // Named by where it resolved to (symlinks in the source path followed), as the copy reads it.
      const base = relative(tree.dir, entry.host).split('\\').join('/');
      add(base || '.', entry.stat);
      if (entry.stat.isDirectory()) for (const e of await walkTree(tree, entry, excludes)) add(base ? `${base}/${e.rel}` : e.rel, e.stat);
    }
  }
  // A context materialised for this build only (git, tarball) would leave an index that never hits.
  const indexes = tree.temporary ? undefined : cache?.contextIndexes;
  const index = indexes ? await indexes.index(tree.dir) : undefined;
  const r = await contextDigest(tree.dir, files.values(), { ...(owner ? { owner } : {}), ...(index ? { index } : {}) });
  if (indexes && index) {
    await indexes.save(index);
    indexes.logger.log('debug', `context digest of ${sources.join(' ')}: ${r.stats.files} files, ${r.stats.reused} unchanged (index), ${r.stats.hashed} read`, { ...r.stats });
  }
  return r.digest;
}

/** Reads from every store in order (first hit wins), writes to one (or none: --no-push-cache). */
class BuildCacheStore implements CacheStore {
  readonly name: string;
  constructor(
    private readonly readers: CacheStore[],
    private readonly writer: CacheStore | undefined,
  ) {
    this.name = [...new Set([...readers, ...(writer ? [writer] : [])].map((s) => s.name))].join(', ');
  }

  async get(key: string, signal?: AbortSignal): Promise<CachedLayer | undefined> {
    for (const r of this.readers) {
      const hit = await r.get(key, signal);
      if (hit) return hit;
    }
    return undefined;
  }

  put(key: string, entry: Parameters<CacheStore['put']>[1], blob: () => Promise<Readable>): Promise<PutResult> {
    if (!this.writer) return Promise.resolve({ key, ok: true });
    return this.writer.put(key, entry, blob);
  }

  async flush(): Promise<PutResult[]> {
    return this.writer ? this.writer.flush() : [];
  }

  async close(): Promise<void> {
    await Promise.allSettled([...new Set([...this.readers, ...(this.writer ? [this.writer] : [])])].map((s) => s.close?.()));
  }
}

export interface OpenBuildCacheOptions {
  destinations: readonly string[];
  client: RegistryClient;
  platform: Platform;
  logger: Logger;
  /** Where context hash indexes live; default defaultContextIndexDir(env); null = none. */
  contextIndexDir?: string | null;
  /** For the default directories; default process.env. */
  env?: NodeJS.ProcessEnv;
}

/** The cache a build uses for its options, or undefined when the cache is off (or has nowhere to live). */
export function openBuildCache(opts: NonNullable<BuildOptions['cache']>, o: OpenBuildCacheOptions): BuildCache | undefined {
  if (!opts.enabled) return undefined;
  const ttlMs = opts.ttl ? parseGoDuration(opts.ttl) : undefined;
  const storeOpts = { client: o.client, logger: o.logger, ...(ttlMs !== undefined ? { ttlMs } : {}) };
  let readers: CacheStore[];
  let writer: CacheStore | undefined;
  if ((opts.from?.length ?? 0) > 0 || (opts.to?.length ?? 0) > 0) {
    const to = (opts.to ?? []).map((spec) => openCacheStore(parseCacheSpec(spec, 'to'), storeOpts));
    readers = [...(opts.from ?? []).map((spec) => openCacheStore(parseCacheSpec(spec, 'from'), storeOpts)), ...to];
    writer = to[0];
  } else {
    const repo = opts.repo ?? defaultCacheRepo(o.destinations);
    if (!repo) {
      o.logger.log('warn', 'layer cache off: no --cache-repo and no registry destination to derive <destination>/cache from', {});
      return undefined;
    }
    const store = openCacheRepo(repo, storeOpts);
    readers = [store];
    writer = store;
  }
  if (opts.noPush) writer = undefined;
  if (opts.noLookup) readers = [];
  const indexDir = o.contextIndexDir === undefined ? defaultContextIndexDir(o.env ?? process.env) : o.contextIndexDir;
  const cache: BuildCache = {
    store: new BuildCacheStore(readers, writer),
    runLayers: opts.runLayers ?? true,
    copyLayers: opts.copyLayers ?? false,
    platform: o.platform,
  };
  // COPY keys and RUN bind-mount keys both digest context files.
  if (indexDir !== null && (cache.copyLayers || cache.runLayers)) cache.contextIndexes = new ContextIndexes(indexDir, o.logger);
  return cache;
}
