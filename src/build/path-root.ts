/**
 * Roots for steps that only touch a few paths (COPY, ADD of plain files, WORKDIR). When the
 * stage's root is not up to date with its layers (they came from the cache, or from RUNs whose
 * changes live in an overlay), bringing it up to date means downloading and unpacking them: on a
 * Debian base that is seconds for a one-file COPY. Instead the step gets a sparse root holding
 * only the paths it resolves, built from the layers' indexes (src/fs/tree), and writes its layer
 * from there; the stage root catches up later only if a step really needs every file.
 *
 * The sparse root lives in memory (memory-root.ts): the step's writes are kept as metadata and
 * references to their sources until the layer is written. GANTRY_SPARSE_MEMORY=0 creates it on
 * disk instead (fs/tree SparseRoot), the way it was first done.
 *
 * Indexes come from the local index store (recorded whenever a build unpacks or writes a layer),
 * else by reading the layer once without unpacking it; that second way is only worth it when no
 * later RUN of the stage will need the full root anyway.
 */
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline, type Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { decompressAuto, readTar, type LayerEntry } from '../archive/index.js';
import { PathTree, recordIndex, SparseRoot, type IndexEntry, type LayerIndex, type LayerIndexStore } from '../fs/index.js';
import { DigestingStream } from '../util/digest.js';
import { GantryError, wrapError } from '../util/errors.js';
import type { ImageLayer, LayerStore, LayerWriteOptions } from './layers.js';
import { scratchDir } from './copy.js';
import { MemoryRoot } from './memory-root.js';
import { diskOps, type RootFsOps } from './root-fs-ops.js';
import type { Owner } from './users.js';

/** Where a path-only step writes, and how to read owners back when the disk cannot hold them. */
export interface PathRoot {
  dir: string;
  /** The file system `dir` lives in (memory for a sparse root). */
  ops: RootFsOps;
  ownerOf(rel: string): Owner | undefined;
  /** True when `dir` is a sparse root (the stage root did not move). */
  sparse: boolean;
  /** Removes a sparse root. */
  release(): Promise<void>;
}

async function drain(body: Readable | Buffer | undefined): Promise<void> {
  if (!body || Buffer.isBuffer(body)) return;
  for await (const _ of body) {
    // discard
  }
}

/** Reads a layer blob once, keeping only its index (no file is written). */
export async function indexLayerBlob(layer: ImageLayer, signal?: AbortSignal): Promise<LayerIndex> {
  try {
    const { output } = await decompressAuto(await layer.open(signal));
    // The index is filed under the diffID the image config claims: check the tar is that one, or
    // a hostile image could plant the index later builds of another image resolve paths with.
    const tar = new DigestingStream();
    pipeline(output, tar, () => {});
    const entries: IndexEntry[] = [];
    for await (const e of recordIndex(readTar(tar), entries)) await drain(e.body);
    if (!tar.readableEnded) {
      tar.resume();
      await finished(tar);
    }
    if (tar.digest !== layer.diffId) {
      throw new GantryError('DIGEST_MISMATCH', `the layer's content has diffID ${tar.digest}, not ${layer.diffId} as the image config says`, {
        hint: 'the image is corrupt or was tampered with; rebuild or re-push it',
      });
    }
    return { entries };
  } catch (err) {
    throw wrapError(err, `indexing layer ${layer.descriptor.digest}`);
  }
}

/** Writes a layer through the build's layer store, recording its index on the way. */
export async function writeIndexedLayer(store: LayerStore, index: LayerIndexStore | undefined, entries: AsyncIterable<LayerEntry>, opts: LayerWriteOptions): Promise<ImageLayer> {
  if (!index) return store.write(entries, opts);
  const recorded: IndexEntry[] = [];
  const layer = await store.write(recordIndex(entries, recorded), opts);
  index.put(layer.diffId, { entries: recorded });
  return layer;
}

/** The metadata tree of a stage's layers, applied incrementally as the stage adds layers. */
export class StageTree {
  private readonly tree = new PathTree();
  private applied = 0;
  private broken = false;

  constructor(private readonly store: LayerIndexStore) {}

  /** Layers (from `applied` on) with no index yet. */
  unindexed(layers: readonly ImageLayer[]): ImageLayer[] {
    return layers.slice(this.applied).filter((l) => this.store.get(l.diffId) === undefined);
  }

  /**
   * The tree with every layer applied, indexing unknown layers from their blobs; undefined when a
   * layer cannot be represented (the unpacker would refuse it too: the full root reports why).
   */
  async catchUp(layers: readonly ImageLayer[], signal?: AbortSignal): Promise<PathTree | undefined> {
    if (this.broken) return undefined;
    for (; this.applied < layers.length; this.applied++) {
      const layer = layers[this.applied]!;
      let index = this.store.get(layer.diffId);
      if (!index) {
        index = await indexLayerBlob(layer, signal);
        this.store.put(layer.diffId, index);
      }
      try {
        this.tree.apply(index);
      } catch {
        this.broken = true;
        return undefined;
      }
    }
    return this.tree;
  }
}

/** Paths a step resolves: `[path, followFinal]`. */
export type WantedPath = readonly [string, boolean];

/** A sparse root under `workDir` with `paths` (and, for name lookups, /etc/passwd and /etc/group). */
export async function sparseRoot(tree: PathTree, workDir: string, paths: readonly WantedPath[], users: boolean, inMemory = true): Promise<PathRoot | undefined> {
  if (users) {
    // Names are looked up in these files: without their content the step needs the real root.
    for (const f of ['etc/passwd', 'etc/group']) {
      const node = tree.get(tree.resolve(f, true));
      if (node && node.type === 'file' && node.content === undefined) return undefined;
    }
  }
  if (inMemory) {
    // A path nothing is ever created at: every call on it goes to the memory root.
    const ops = new MemoryRoot(join(workDir, `sparse-${randomBytes(6).toString('hex')}`), tree);
    return { dir: ops.root, ops, ownerOf: () => undefined, sparse: true, release: async () => {} };
  }
  const dir = await scratchDir(workDir, 'sparse');
  const root = new SparseRoot(dir, tree);
  try {
    for (const [p, follow] of paths) root.materialize(p, follow);
    if (users) {
      root.materialize('/etc/passwd', true);
      root.materialize('/etc/group', true);
    }
    root.finish();
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw wrapError(err, 'preparing the paths of the step');
  }
  return {
    dir,
    ops: diskOps,
    ownerOf: (rel) => root.ownerOf(rel),
    sparse: true,
    release: () => rm(dir, { recursive: true, force: true }),
  };
}
