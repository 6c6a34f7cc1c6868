import type { BuildPlan, Instruction, PlannedStage } from '../dockerfile/index.js';
import type { UnpackedLayerStore } from '../cache/layer-store.js';
import type { LayerIndexStore } from '../fs/index.js';
import type { BaseImageCache } from '../cache/index.js';
import type { RegistryClient } from '../registry/index.js';
import type { Logger } from '../util/logger.js';
import type { ResolvedImage } from './base.js';
import type { LayerStore, LayerWriteOptions } from './layers.js';
import type { BuildCache } from './cache.js';
import type { BuildResult } from './options.js';
import type { RunContext } from './run-context.js';
import type { SourceTree } from './sources.js';
import type { RootFs, StageImage } from './stage.js';

/** A stage whose base is known and whose ONBUILD triggers are in place, ready to run. */
export interface PreparedStage {
  planned: PlannedStage;
  /** Triggers first, then the stage's own instructions. */
  instructions: Instruction[];
  /** Stage indexes this stage needs finished first (FROM, COPY --from, triggers). */
  needs: number[];
  base?: ResolvedImage;
  /** The base config's (or base stage's) ONBUILD triggers consumed by this stage. */
  triggers: string[];
  /** How many of `instructions` (the first ones) came from those triggers. */
  triggerInstructions: number;
}

/** A finished stage. */
export interface BuiltStage {
  index: number;
  image: StageImage;
  /** The stage's files, unpacked on first use (COPY --from, stages built FROM it). */
  files(): Promise<string>;
  rootfs: RootFs;
  /** Layer cache key of the stage's last layer; undefined when the cache is off or cannot name it. */
  cacheKey?: string;
}

/** What every stage executor shares within one build. */
export interface BuildSession {
  plan: BuildPlan;
  prepared: Map<number, PreparedStage>;
  context: SourceTree;
  store: LayerStore;
  layerOptions: LayerWriteOptions;
  client: RegistryClient;
  /** Temp directory of this build (rootfs dirs, downloads, link layers). */
  workDir: string;
  /** `created` of new config/history entries. */
  created: Date;
  /** mtime for directories and heredoc files this build creates. */
  now: Date;
  logger: Logger;
  signal?: AbortSignal;
  stage(index: number): Promise<BuiltStage>;
  /** Files of an image named by COPY --from=<image>, unpacked once per build. */
  imageFiles(ref: string): Promise<SourceTree>;
  steps: BuildResult['steps'];
  /** What RUN steps share within the build (sandbox backend, secrets, caches, hosts file). */
  run: RunContext;
  stageLabel(index: number): string;
  /** The layer cache (--cache), when on. */
  cache?: BuildCache;
  /** Warmed base images (--cache-dir), for every image the build resolves. */
  baseImages?: BaseImageCache;
  /** Indexes of layers (paths and metadata), kept across builds: see path-root.ts. */
  layerIndex?: LayerIndexStore;
  /** Layers unpacked once per machine and hard-linked into stage roots (layer-farm.ts); off when undefined. */
  unpackedLayers?: UnpackedLayerStore;
}
