/**
 * Runs one stage: starts from its base (scratch, image or earlier stage), then executes each
 * instruction in order, expanding it with the stage's ARG/ENV scope, and records config, history
 * and layers exactly as BuildKit's Dockerfile frontend would.
 */
import { rm } from 'node:fs/promises';
import { basename, join, posix } from 'node:path';
import { Readable } from 'node:stream';
import {
  chompHeredocContent,
  IgnoreMatcher,
  type AddInstruction,
  type CopyInstruction,
  type Instruction,
  type RunInstruction,
  type StageScope,
  type WorkdirInstruction,
} from '../dockerfile/index.js';
import type { ImageConfig } from '../oci/types.js';
import { GantryError, wrapError } from '../util/errors.js';
import { chainKey, configFlags, copiedFilesDigest, isNoLayerEntry, lastHistory, layerFromCache, NO_LAYER_BLOB, noLayerEntry, stepKey } from './cache.js';
import type { CachedLayer } from '../cache/index.js';
import { copyItem, isTarArchive, RootWriter, scratchDir, type CopyItem } from './copy.js';
import { download, isGitSource, isUrlSource } from './download.js';
import { fileOpCreatedBy } from './history.js';
import { entriesFromRoot, withParents, type ImageLayer } from './layers.js';
import { PathTree } from '../fs/index.js';
import { sparseRoot, StageTree, writeIndexedLayer, type PathRoot, type WantedPath } from './path-root.js';
import { applyMetadata, ensurePath, historyEntry, inheritConfig, normalizeWorkdir, scratchConfig, type MetaState } from './metadata.js';
import type { BuildResult } from './options.js';
import type { BuildSession, BuiltStage, PreparedStage } from './session.js';
import { cleanSourcePath, hasWildcard, lstatInTree, matchSource, type SourceTree } from './sources.js';
import { runStep } from './run.js';
import { mountIdentities } from './run-mounts.js';
import type { Download } from './download.js';
import { imageManifestDigest } from './image-digest.js';
import { baseLayers, InplaceRootFs, RootFs, type StageImage } from './stage.js';
import { diskOps } from './root-fs-ops.js';
import { needsLookup, resolveOwner, type Owner } from './users.js';

/** `file:line` of an instruction, for messages. */
export function where(inst: Instruction): string {
  return `${inst.node.range.file}:${inst.node.range.startLine}`;
}

function located(err: unknown, inst: Instruction): GantryError {
  const e = err instanceof GantryError ? err : wrapError(err, 'executing instruction');
  if (e.message.startsWith(where(inst))) return e;
  return new GantryError(e.code, `${where(inst)}: ${e.message}`, { ...e.details, line: inst.node.range.startLine, file: inst.node.range.file }, { cause: err });
}

/** Instruction text for logs: continuation lines joined, whitespace collapsed. */
export function displayInstruction(inst: Instruction): string {
  return inst.node.original.replace(/\\\s*\n/g, ' ').replace(/\s+/g, ' ').trim();
}

class StageExecutor {
  private readonly meta: MetaState;
  private readonly layers: ImageLayer[];
  private readonly rootfs: RootFs;

  private readonly baseImage: StageImage['base'];
  /** Key of the last layer (cache chain parent); undefined = this stage cannot use the cache. */
  private cacheParent: string | undefined;
  /** Whether the current step was served from the cache. */
  private hit = false;
  /** Position of the current instruction (1-based). */
  private step = 0;
  /** Path metadata of the layers, for steps that need only a few paths (path-root.ts). */
  private readonly tree: StageTree | undefined;

  constructor(
    private readonly s: BuildSession,
    private readonly p: PreparedStage,
    image: StageImage,
    cacheParent?: string,
  ) {
    this.baseImage = image.base;
    this.cacheParent = s.cache ? cacheParent : undefined;
    this.meta = { config: image.config, cmdSet: false };
    this.layers = image.layers;
    const inplace = s.run.inplace;
    this.rootfs = inplace ? new InplaceRootFs(inplace, s.layerIndex) : new RootFs(join(s.workDir, `rootfs-${p.planned.index}`), s.layerIndex, s.unpackedLayers);
    this.tree = s.layerIndex && s.run.opts.env.GANTRY_SPARSE_ROOT !== '0' ? new StageTree(s.layerIndex) : undefined;
  }

  private get config(): ImageConfig {
    return this.meta.config;
  }

  private root(): Promise<string> {
    return this.rootfs.catchUp(this.layers, this.s.signal);
  }

  /**
   * Where a step that resolves only `paths` (and, with `users`, looks names up in /etc/passwd and
   * /etc/group) writes: the stage root when it is up to date, else a sparse root (path-root.ts),
   * unless a later RUN will need the full root anyway and some layer's index would first have to
   * be read from its blob.
   */
  private async pathRoot(paths: readonly WantedPath[], users: boolean): Promise<PathRoot> {
    if (!this.tree || this.rootfs.isCurrent(this.layers.length)) return this.fullRoot();
    const laterRun = this.p.instructions.slice(this.step).some((i) => i.kind === 'run');
    if (laterRun && this.tree.unindexed(this.layers).length > 0) return this.fullRoot();
    const tree = await this.tree.catchUp(this.layers, this.s.signal);
    const sparse = tree && (await sparseRoot(tree, this.s.workDir, paths, users, this.s.run.opts.env.GANTRY_SPARSE_MEMORY !== '0'));
    if (!sparse) return this.fullRoot();
    this.s.logger.log('debug', `sparse root for ${paths.map(([p]) => p).join(', ') || 'name lookups'} (${this.layers.length} layers not unpacked)`);
    return sparse;
  }

  /** The stage root, up to date, as a PathRoot. */
  private async fullRoot(): Promise<PathRoot> {
    const dir = await this.root();
    return { dir, ops: diskOps, ownerOf: (rel) => this.rootfs.ownerOf(rel), sparse: false, release: async () => {} };
  }

  async run(): Promise<BuiltStage> {
    const scope = this.p.planned.createScope(this.config.config?.Env ?? []);
    const total = this.p.instructions.length;
    let n = 0;
    for (const raw of this.p.instructions) {
      n++;
      this.step = n;
      if (this.s.signal?.aborted) throw new GantryError('ABORTED', 'build cancelled');
      const started = performance.now();
      let layer: ImageLayer | undefined;
      this.hit = false;
      const layersBefore = this.layers.length;
      const prefix = `[${this.s.stageLabel(this.p.planned.index)}${n}/${total}]`;
      try {
        const expanded = scope.next(raw).instruction;
        layer = expanded.kind === 'run' ? await this.runInstruction(expanded, scope, raw, prefix) : await this.execute(expanded);
      } catch (err) {
        throw located(err, raw);
      }
      // A layer added without a key of its own (WORKDIR, uncached COPY) still moves the chain on.
      if (!this.hit && this.cacheParent !== undefined && this.layers.length > layersBefore && !this.keyed) {
        this.cacheParent = chainKey(this.cacheParent, this.cachePlatform(), this.layers[this.layers.length - 1]!.diffId);
      }
      this.keyed = false;
      const ms = performance.now() - started;
      const text = (n <= this.p.triggerInstructions ? 'ONBUILD ' : '') + displayInstruction(raw);
      const step: BuildResult['steps'][number] = {
        stage: this.p.planned.name ?? String(this.p.planned.index),
        instruction: text,
        cached: this.hit,
        ms: Math.round(ms),
      };
      if (layer) step.layer = layer.descriptor.digest;
      this.s.steps.push(step);
      this.s.logger.log('info', `[${this.s.stageLabel(this.p.planned.index)}${n}/${total}] ${text}  ${(ms / 1000).toFixed(2)}s`, {
        stage: step.stage,
        step: n,
        of: total,
        ms: step.ms,
        ...(layer ? { layer: layer.descriptor.digest } : {}),
      });
    }
    const image: StageImage = { config: this.config, layers: this.layers };
    if (this.baseImage) image.base = this.baseImage;
    // inplace: the next stage wipes the shared root, so later readers unpack this stage's layers
    // into a directory of their own (under the work dir, which the sandbox ignores).
    const rootfs = this.s.run.inplace ? new RootFs(join(this.s.workDir, `stage-files-${this.p.planned.index}`), this.s.layerIndex, this.s.unpackedLayers) : this.rootfs;
    const layers = this.layers;
    const signal = this.s.signal;
    let files: Promise<string> | undefined;
    const built: BuiltStage = {
      index: this.p.planned.index,
      image,
      rootfs,
      files: () => (files ??= rootfs.catchUp(layers, signal)),
    };
    if (this.cacheParent !== undefined) built.cacheKey = this.cacheParent;
    return built;
  }

  /** Set when the step computed its own key (hit or stored miss): the chain already moved. */
  private keyed = false;

  private cachePlatform() {
    return this.s.cache!.platform;
  }

  /** Looks a step up: on a hit appends the layer and its history, without touching the root. */
  private async lookup(key: string): Promise<ImageLayer | undefined> {
    const hit = await this.s.cache!.store.get(key, this.s.signal);
    this.cacheParent = key;
    this.keyed = true;
    if (!hit) return undefined;
    return this.appendHit(hit);
  }

  private appendHit(hit: CachedLayer): ImageLayer {
    const layer = layerFromCache(hit);
    this.layers.push(layer);
    const cfg = this.config;
    cfg.history = [...(cfg.history ?? []), { ...hit.history, created: hit.history.created ?? this.s.created.toISOString() }];
    cfg.rootfs = { type: 'layers', diff_ids: [...cfg.rootfs.diff_ids, layer.diffId] };
    this.hit = true;
    return layer;
  }

  /** Stores a new layer under `key` in the background (flushed before the build returns). */
  private store(key: string, layer: ImageLayer | undefined): void {
    if (!layer) return;
    void this.s.cache!.store.put(key, { layer: layer.descriptor, diffId: layer.diffId, history: lastHistory(this.config), platform: this.cachePlatform() }, () => layer.open());
  }

  /** Records that the step added no layer (the cache stores a tiny marker blob, never part of an image). */
  private storeNoLayer(key: string): void {
    void this.s.cache!.store.put(key, noLayerEntry(lastHistory(this.config), this.cachePlatform()), async () => Readable.from([NO_LAYER_BLOB]));
  }

  private history(createdBy: string, layer: ImageLayer | undefined): void {
    const cfg = this.config;
    cfg.history = [...(cfg.history ?? []), historyEntry(createdBy, this.s.created, layer === undefined)];
    if (layer) cfg.rootfs = { type: 'layers', diff_ids: [...cfg.rootfs.diff_ids, layer.diffId] };
  }

  private async execute(inst: Instruction): Promise<ImageLayer | undefined> {
    switch (inst.kind) {
      case 'run':
        throw new GantryError('INTERNAL', 'RUN goes through runInstruction');
      case 'copy':
      case 'add':
        return this.copy(inst);
      case 'workdir':
        return this.workdir(inst);
      case 'from':
        throw new GantryError('INTERNAL', 'FROM inside a stage');
      default: {
        const msg = applyMetadata(this.meta, inst);
        if (msg !== undefined) this.history(msg, undefined);
        return undefined;
      }
    }
  }

  /**
   * Adds a layer written from `root` (paths in `w`), or nothing when the step changed no path.
   * `lower` gives the owners the layers below say, where the disk could not keep them.
   */
  private async addLayer(root: string, w: RootWriter, lower: (rel: string) => Owner | undefined = () => undefined): Promise<ImageLayer | undefined> {
    if (withParents(w.written).length === 0) return undefined;
    const layer = await writeIndexedLayer(this.s.store, this.s.layerIndex, entriesFromRoot(root, w.written, (rel) => w.owners.get(rel) ?? lower(rel), w.ops), this.s.layerOptions);
    if (root === this.rootfs.dir) for (const [k, v] of w.owners) this.rootfs.owners.set(k, v);
    this.layers.push(layer);
    return layer;
  }

  /** RUN: see run.ts. The root catches up with the new layer when a later step needs files. */
  private async runInstruction(inst: RunInstruction, scope: StageScope, raw: Instruction, prefix: string): Promise<ImageLayer> {
    let key: string | undefined;
    const cache = this.s.cache;
    // Mount options, never secret values or cache contents; a bind mount adds the digest of what it
    // exposes: the context files under its source, a stage's final key, or an image's manifest digest.
    const mounts =
      cache?.runLayers && this.cacheParent !== undefined
        ? await mountIdentities(inst.mounts, async (from, source) => {
            // The mount takes `source` literally while the digest matches it as a pattern: where
            // the two could differ (wildcard characters), the step is not looked up.
            if (from === undefined) return /[*?[\\]/.test(source) ? undefined : copiedFilesDigest(this.s.context, [source], undefined, undefined, cache);
            const idx = /^\d+$/.test(from) ? Number(from) : this.stageByName(from);
            return idx !== undefined ? (await this.s.stage(idx)).cacheKey : imageManifestDigest(this.s, from);
          })
        : undefined;
    if (cache?.runLayers && this.cacheParent !== undefined && mounts) {
      key = stepKey({
        parent: this.cacheParent,
        platform: cache.platform,
        instruction: { kind: 'run', args: inst.command.args, shell: inst.command.shell, flags: { ...configFlags(this.config), network: inst.network, security: inst.security } },
        env: { ...Object.fromEntries((this.config.config?.Env ?? []).map((kv) => [kv.slice(0, kv.indexOf('=') < 0 ? kv.length : kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])), ...scope.runEnv() },
        mounts,
        heredocs: inst.heredocs.map((h) => ({ name: h.name, body: h.content, expand: h.expand })),
      });
      const hit = await this.lookup(key);
      if (hit) return hit;
    }
    const root = await this.root();
    const { layer, createdBy, snapshotted } = await runStep({
      session: this.s,
      inst,
      display: displayInstruction(raw),
      config: this.config,
      root,
      env: scope.runEnv(),
      historyArgs: scope.historyArgs(),
      prefix,
      tree: (from) => this.mountTree(from),
    });
    this.layers.push(layer);
    if (snapshotted) this.rootfs.markApplied(this.layers.length, { snapshotted: true });
    this.history(createdBy, layer);
    if (key) this.store(key, layer);
    return layer;
  }

  /** The tree of a RUN bind mount: the context, a stage (by name or index) or an image. */
  private async mountTree(from: string | undefined): Promise<SourceTree> {
    if (from === undefined || from === '') return this.s.context;
    const idx = /^\d+$/.test(from) ? Number(from) : this.stageByName(from);
    if (idx !== undefined) {
      const stage = await this.s.stage(idx);
      return { dir: await stage.files(), resetOwners: false, name: `stage ${from}` };
    }
    return this.s.imageFiles(from);
  }

  /**
   * WORKDIR creates its directory (a layer) unless it exists (no layer). With the cache on it is
   * keyed by chain + path + USER and the outcome is recorded, so a hit needs no rootfs: either the
   * stored layer is appended by descriptor, or a "no layer" marker entry says nothing changed.
   */
  private async workdir(inst: WorkdirInstruction): Promise<ImageLayer | undefined> {
    const c = (this.config.config ??= {});
    const wd = normalizeWorkdir(c.WorkingDir, inst.path);
    c.WorkingDir = wd;
    let layer: ImageLayer | undefined;
    let key: string | undefined;
    const cache = this.s.cache;
    if (wd !== '/' && cache && this.cacheParent !== undefined) {
      key = stepKey({ parent: this.cacheParent, platform: cache.platform, instruction: { kind: 'workdir', args: [wd], flags: { user: c.User ?? '' } } });
      const hit = await this.s.cache!.store.get(key, this.s.signal);
      this.cacheParent = key;
      this.keyed = true;
      if (hit && isNoLayerEntry(hit)) {
        this.hit = true;
        this.history(`WORKDIR ${wd}`, undefined);
        return undefined;
      }
      if (hit) return this.appendHit(hit);
    }
    if (wd !== '/') {
      const root = await this.pathRoot([[wd, true]], c.User ? needsLookup(c.User) : false);
      try {
        const owner = c.User ? await resolveOwner(c.User, root.dir, root.ops) : { uid: 0, gid: 0 };
        const w = new RootWriter(root.dir, root.ops);
        await w.mkdirAll(wd, owner, this.s.now);
        await w.finish();
        layer = await this.addLayer(root.dir, w, root.ownerOf);
        if (layer && !root.sparse) this.rootfs.markApplied(this.layers.length);
      } finally {
        await root.release();
      }
    }
    this.history(`WORKDIR ${wd}`, layer);
    if (key) {
      if (layer) this.store(key, layer);
      else this.storeNoLayer(key);
    }
    return layer;
  }

  private async sourceTree(inst: CopyInstruction | AddInstruction): Promise<SourceTree> {
    if (inst.kind !== 'copy' || inst.from === undefined) return this.s.context;
    const from = inst.from;
    const idx = this.sourceStageIndex(inst);
    if (idx !== undefined) {
      const stage = await this.s.stage(idx);
      return { dir: await stage.files(), resetOwners: false, name: `stage ${from}` };
    }
    return this.s.imageFiles(from);
  }

  /** The earlier stage a `COPY --from` reads, or undefined when it names an image (or is no --from). */
  private sourceStageIndex(inst: CopyInstruction | AddInstruction): number | undefined {
    if (inst.kind !== 'copy' || inst.from === undefined) return undefined;
    const from = inst.from;
    return /^\d+$/.test(from) ? Number(from) : this.p.planned.dependencies.find((d) => d.node === inst.node)?.stage ?? this.stageByName(from);
  }

  private stageByName(name: string): number | undefined {
    return this.s.plan.stages.find((st) => st.name === name.toLowerCase())?.index;
  }

  private async copy(inst: CopyInstruction | AddInstruction): Promise<ImageLayer | undefined> {
    const c = (this.config.config ??= {});
    const workdir = c.WorkingDir || '/';
    const destRaw = inst.dest;
    const trailing = destRaw === '' || destRaw === '.' || destRaw.endsWith('/') || destRaw.endsWith('/.');
    const dest = posix.isAbsolute(destRaw) ? posix.normalize(destRaw) : posix.join(workdir, destRaw);
    const parents = inst.kind === 'copy' && inst.parents;
    const destIsDir = trailing || inst.sources.length + inst.contents.length > 1 || parents;

    let chmod: number | undefined;
    if (inst.chmod !== undefined) {
      if (!/^[0-7]+$/.test(inst.chmod) || parseInt(inst.chmod, 8) > 0o7777) {
        throw new GantryError('DOCKERFILE_INVALID', `invalid chmod parameter: '${inst.chmod}'. it should be octal string and between 0 and 07777`);
      }
      chmod = parseInt(inst.chmod, 8);
    }
    if (inst.kind === 'add' && inst.checksum !== undefined) {
      if (inst.sources.length !== 1 || inst.contents.length > 0) throw new GantryError('DOCKERFILE_INVALID', 'checksum can\'t be specified for multiple sources');
      if (!isUrlSource(inst.sources[0]!)) throw new GantryError('DOCKERFILE_INVALID', 'checksum can\'t be specified for non-HTTP(S) sources');
    }

    // The image's own /etc/passwd decides --chown names (a --link copy still looks names up
    // there), so names are resolved only when the step runs: the cache key holds the name, and
    // the parent key already covers every file below, /etc/passwd included.
    const chownSpec = inst.chown !== undefined && inst.chown !== '' ? inst.chown : undefined;
    const chownByName = chownSpec !== undefined && needsLookup(chownSpec);
    let chown: Owner | undefined = chownSpec !== undefined && !chownByName ? await resolveOwner(chownSpec, undefined) : undefined;

    let key: string | undefined;
    const cache = this.s.cache;
    const fromContext = (inst.kind === 'add' || inst.from === undefined) && inst.sources.every((src) => (inst.kind === 'add' || !isUrlSource(src)) && !isGitSource(src));
    // ADD <url>: downloads made to key the step, reused by a miss (src -> file and its scratch dir).
    const fetched = new Map<string, { d: Download; dir: string }>();
    // COPY --from=<stage> is keyed by the source stage's final key, which covers every file in it:
    // a fully cached source stage then needs neither its files nor this stage's root.
    const fromStage = cache?.copyLayers && this.cacheParent !== undefined && !fromContext ? this.sourceStageIndex(inst) : undefined;
    const fromStageKey = fromStage !== undefined ? (await this.s.stage(fromStage)).cacheKey : undefined;
    // COPY --from=<image>: the manifest digest the reference resolves to names every file of it.
    const fromImage = cache?.copyLayers && this.cacheParent !== undefined && !fromContext && fromStage === undefined && inst.kind === 'copy' && inst.from !== undefined ? inst.from : undefined;
    const fromImageDigest = fromImage !== undefined ? await imageManifestDigest(this.s, fromImage) : undefined;
    if (cache?.copyLayers && this.cacheParent !== undefined && (fromContext || fromStageKey !== undefined || fromImageDigest !== undefined)) {
      const excludes = inst.excludes.length ? new IgnoreMatcher(inst.excludes) : undefined;
      const urls = inst.kind === 'add' ? await this.urlInputs(inst, fetched) : [];
      key = stepKey({
        parent: this.cacheParent,
        platform: cache.platform,
        instruction: {
          kind: inst.kind,
          args: [...inst.sources, inst.dest],
          flags: {
            workdir: workdir,
            chown: chownByName ? `name:${chownSpec}` : chown ? `${chown.uid}:${chown.gid}` : undefined,
            chmod: inst.chmod,
            link: inst.link,
            parents: parents || undefined,
            excludes: inst.excludes.length ? inst.excludes : undefined,
            unpack: inst.kind === 'add' ? inst.unpack : undefined,
          },
        },
        ...(fromStageKey !== undefined
          ? { inputs: [{ name: 'stage', digest: fromStageKey }] }
          : fromImageDigest !== undefined
            ? { inputs: [{ name: 'image', digest: fromImageDigest }] }
            : { files: await copiedFilesDigest(this.s.context, inst.sources, excludes, chown ?? { uid: 0, gid: 0 }, cache) }),
        ...(urls.length > 0 ? { inputs: urls } : {}),
        heredocs: inst.contents.map((c) => ({ name: c.path, body: c.data })),
      });
      const hit = await this.lookup(key);
      if (hit) {
        for (const f of fetched.values()) await rm(f.dir, { recursive: true, force: true });
        return hit;
      }
    }

    const temp: string[] = [...fetched.values()].map((f) => f.dir);
    let pathRoot: PathRoot | undefined;
    try {
      const items = await this.collectItems(inst, temp, fetched);
      let root: string;
      if (inst.link) {
        // --link writes on nothing: an empty root, in memory like the sparse ones (nothing of it
        // is ever read but the layer).
        const env = this.s.run.opts.env;
        // Archives unpack on disk only (copy.ts extractArchive).
        if (env.GANTRY_SPARSE_ROOT !== '0' && env.GANTRY_SPARSE_MEMORY !== '0' && !items.some((i) => i.kind === 'archive')) {
          pathRoot = (await sparseRoot(new PathTree(), this.s.workDir, [], false, true))!;
          root = pathRoot.dir;
        } else {
          root = await scratchDir(this.s.workDir, 'link');
          temp.push(root);
        }
        if (chownByName) {
          const names = await this.pathRoot([], true);
          try {
            chown = await resolveOwner(chownSpec, names.dir, names.ops);
          } finally {
            await names.release();
          }
        }
      } else {
        // ADD unpacks archives through whatever the image has below their destination: full root.
        const wanted: WantedPath[] = [[dest, true], ...items.flatMap((i): WantedPath[] => (i.kind === 'tree' && i.parents !== undefined ? [[posix.join(dest, i.parents), false]] : []))];
        pathRoot = items.some((i) => i.kind === 'archive') ? await this.fullRoot() : await this.pathRoot(wanted, chownByName);
        root = pathRoot.dir;
        if (chownByName) chown = await resolveOwner(chownSpec, root, pathRoot.ops);
      }
      const w = new RootWriter(root, pathRoot?.ops);
      const opts = { now: this.s.now, ...(chown ? { chown } : {}), ...(chmod !== undefined ? { chmod } : {}), ...(this.s.signal ? { signal: this.s.signal } : {}) };
      if (destIsDir) await w.mkdirAll(dest, chown ?? { uid: 0, gid: 0 }, this.s.now);
      for (const item of items) await copyItem(w, item, dest, opts);
      await w.finish();
      const layer = await this.addLayer(root, w, pathRoot?.ownerOf);
      if (pathRoot && !pathRoot.sparse) this.rootfs.markApplied(this.layers.length);
      const createdBy = fileOpCreatedBy({
        kind: inst.kind,
        parents,
        ...(inst.chown !== undefined ? { chown: inst.chown } : {}),
        ...(inst.chmod !== undefined ? { chmod: inst.chmod } : {}),
        sources: inst.sources,
        contents: inst.contents.map((x) => x.path),
        dest: inst.dest,
      });
      this.history(createdBy, layer);
      if (key) this.store(key, layer);
      return layer;
    } finally {
      await pathRoot?.release();
      for (const t of temp) await rm(t, { recursive: true, force: true });
    }
  }

  /**
   * Cache inputs of ADD's URL sources, keyed as BuildKit keys its HTTP source: `--checksum` names
   * the content without any request; otherwise the file is downloaded now (kept in `fetched` for a
   * miss to copy) and named by its digest and Last-Modified, which becomes the file's mtime.
   */
  private async urlInputs(inst: AddInstruction, fetched: Map<string, { d: Download; dir: string }>): Promise<Array<{ name: string; digest: string }>> {
    const out: Array<{ name: string; digest: string }> = [];
    for (const src of inst.sources) {
      if (!isUrlSource(src)) continue;
      if (inst.checksum !== undefined) {
        out.push({ name: `url ${src}`, digest: inst.checksum });
        continue;
      }
      let f = fetched.get(src);
      if (!f) {
        const dir = await scratchDir(this.s.workDir, 'download');
        try {
          f = { d: await download(src, dir, undefined, this.s.signal), dir };
        } catch (err) {
          await rm(dir, { recursive: true, force: true });
          throw err;
        }
        fetched.set(src, f);
      }
      out.push({ name: `url ${src}${f.d.mtime ? ` last-modified ${f.d.mtime.toISOString()}` : ''}`, digest: f.d.digest });
    }
    return out;
  }

  /**
   * What a COPY/ADD copies: matched tree paths (named symlinks followed), local archives ADD
   * unpacks, downloads (into directories added to `temp`) and heredoc files.
   */
  private async collectItems(inst: CopyInstruction | AddInstruction, temp: string[], fetched?: ReadonlyMap<string, { d: Download }>): Promise<CopyItem[]> {
    const isAdd = inst.kind === 'add';
    const what = isAdd ? 'ADD' : 'COPY';
    const parents = inst.kind === 'copy' && inst.parents;
    const tree = await this.sourceTree(inst);
    const excludes = inst.excludes.length ? new IgnoreMatcher(inst.excludes) : undefined;
    const items: CopyItem[] = [];
    for (const src of inst.sources) {
      if (isGitSource(src)) {
        throw new GantryError('UNSUPPORTED', `${what} of a git repository (${src}) is not supported by this version of gantry yet`, {
          hint: 'clone the repository into the build context first, or use a git build context',
        });
      }
      if (isUrlSource(src)) {
        if (!isAdd) throw new GantryError('DOCKERFILE_INVALID', 'source can\'t be a URL for COPY', { hint: 'use ADD to download files' });
        let d = fetched?.get(src)?.d;
        if (!d) {
          const dir = await scratchDir(this.s.workDir, 'download');
          temp.push(dir);
          d = await download(src, dir, inst.checksum, this.s.signal);
        }
        items.push({ kind: 'file', name: d.name, host: d.host, mode: 0o600, mtime: d.mtime ?? this.s.now });
        continue;
      }
      // --parents keeps the path below the `/./` pivot (or the whole path) under the destination.
      const cut = parents ? src.indexOf('/./') : -1;
      const pivot = cut >= 0 ? cleanSourcePath(src.slice(0, cut)) : '';
      const matches = await matchSource(tree, src);
      if (matches.length === 0) {
        if (hasWildcard(cleanSourcePath(src))) continue;
        const inContext = tree === this.s.context;
        throw new GantryError('NOT_FOUND', `${what} failed: "/${cleanSourcePath(src)}": not found in ${tree.name}${inContext ? ' (or excluded by .dockerignore)' : ''}`, {
          hint: inContext ? 'check the path is relative to the build context and not listed in .dockerignore' : 'check the path exists in that stage or image',
        });
      }
      for (const m of matches) {
        const entry = await lstatInTree(tree, m, true);
        if (!entry) throw new GantryError('NOT_FOUND', `${what} failed: "/${m}" is a symlink whose target does not exist in ${tree.name}`);
        if (excludes && m !== '' && !entry.stat.isDirectory() && excludes.matches(basename(m))) continue;
        const name = basename(m) || basename(tree.dir);
        if (isAdd && entry.stat.isFile() && inst.unpack !== false && (await isTarArchive(entry.host))) {
          items.push({ kind: 'archive', name, host: entry.host });
          continue;
        }
        const item: CopyItem = { kind: 'tree', tree, entry, name };
        if (excludes) item.excludes = excludes;
        if (parents) item.parents = pivot === '' ? m : posix.relative(pivot, m);
        items.push(item);
      }
    }
    for (const content of inst.contents) {
      const heredoc = inst.node.heredocs.find((h) => h.name === content.path);
      const data = heredoc?.chomp ? chompHeredocContent(content.data) : content.data;
      items.push({ kind: 'file', name: content.path, data: Buffer.from(data), mode: 0o644, mtime: this.s.now });
    }
    if (items.length === 0) {
      throw new GantryError('NOT_FOUND', 'no source files were specified', { hint: 'no file in the build context matches the source patterns' });
    }
    return items;
  }
}

/** Builds one stage on top of its base (scratch, a resolved image or a finished stage). */
export async function runStage(s: BuildSession, p: PreparedStage, parent?: BuiltStage): Promise<BuiltStage> {
  let image: StageImage;
  const base = p.planned.base;
  if (base.kind === 'stage') {
    if (!parent) throw new GantryError('INTERNAL', `stage ${p.planned.index} needs its base stage`);
    image = { config: inheritConfig(parent.image.config), layers: [...parent.image.layers] };
    if (parent.image.base) image.base = parent.image.base;
  } else if (base.kind === 'image') {
    if (!p.base) throw new GantryError('INTERNAL', `stage ${p.planned.index}: base image not resolved`);
    image = { config: inheritConfig(p.base.config), layers: baseLayers(p.base), base: p.base };
  } else {
    image = { config: scratchConfig(p.planned.platform ?? s.plan.targetPlatform), layers: [] };
  }
  if (p.triggers.length > 0) delete image.config.config!.OnBuild;
  ensurePath(image.config);
  let cacheParent: string | undefined;
  if (base.kind === 'stage') cacheParent = parent?.cacheKey;
  else if (base.kind === 'image') cacheParent = p.base?.manifestRaw.digest;
  else cacheParent = 'scratch';
  return new StageExecutor(s, p, image, cacheParent).run();
}
