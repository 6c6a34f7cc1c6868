import { statSync } from 'node:fs';
import { build } from '../build/index.js';
import type { BuildOptions, BuildResult } from '../build/options.js';
import { executorFlags } from './executor-flags.js';
import { formatHelp, parseFlags, rejectUnsupported, UsageError, type ParsedFlags } from './flags.js';
import { nonNegativeInt, parseBuildArgs, parseLabels } from './build-options.js';
import { cliLogger } from './log.js';
import { mergedRegistryOptions } from './registry-flags.js';
import { applyRunFlags } from './run-flags.js';
import type { CliIO } from './main.js';

const KANIKO_DIR = '/kaniko';
const USAGE = 'gantry executor [flags]   (also installed as /kaniko/executor in the executor image)';
const DESCRIPTION = `Builds a Dockerfile and pushes the image, with the flags of Kaniko's executor.`;

const helpFlag = { name: 'help', short: 'h', kind: 'bool' as const, help: 'show this help' };

/** Flags whose Kaniko meaning is already what gantry always does (so accepting them ignores nothing). */
function checkSatisfiedFlags(p: ParsedFlags): void {
  const mode = p.values['snapshot-mode'] as string;
  if (!['full', 'redo', 'time'].includes(mode)) throw new UsageError(`invalid --snapshot-mode "${mode}": expected full, redo or time`);
  if (p.given.has('force-build-metadata')) throw new UsageError('gantry executor: flag --force-build-metadata is not supported yet');
  if (p.given.has('push-ignore-immutable-tag-errors')) throw new UsageError('gantry executor: flag --push-ignore-immutable-tag-errors is not supported yet');
}

export function executorOptions(p: ParsedFlags, io: CliIO): BuildOptions {
  const v = p.values;
  const compression = v.compression as string;
  if (compression !== '' && compression !== 'gzip' && compression !== 'zstd') throw new UsageError(`invalid --compression "${compression}": expected gzip or zstd`);
  const level = Number(v['compression-level']);
  if (!Number.isInteger(level)) throw new UsageError(`invalid --compression-level "${String(v['compression-level'])}"`);
  const destinations = v.destination as string[];
  if (destinations.length === 0 && v['no-push'] !== true && !v['tar-path'] && !v['oci-layout-path']) {
    throw new UsageError('no --destination given', 'pass --destination=REGISTRY/REPO:TAG, or --no-push (optionally with --tar-path / --oci-layout-path)');
  }
  const retries = Math.max(nonNegativeInt(v['image-download-retry'] as string, 'image-download-retry'), 0);
  const opts: BuildOptions = {
    context: v.context as string,
    dockerfile: v.dockerfile as string,
    buildArgs: parseBuildArgs(v['build-arg'] as string[]),
    labels: parseLabels(v.label as string[]),
    skipUnusedStages: v['skip-unused-stages'] === true,
    destinations,
    noPush: v['no-push'] === true,
    pushRetry: nonNegativeInt(v['push-retry'] as string, 'push-retry'),
    skipPushPermissionCheck: v['skip-push-permission-check'] === true,
    reproducible: v.reproducible === true,
    registry: { ...mergedRegistryOptions(p, io.env), ...(retries > 0 ? { retries } : {}) },
    env: io.env,
  };
  if (v.target) opts.target = v.target as string;
  if (v['context-sub-path']) opts.contextSubPath = v['context-sub-path'] as string;
  if (v['custom-platform']) opts.platform = v['custom-platform'] as string;
  if (v['tar-path']) opts.tarPath = v['tar-path'] as string;
  if (v['oci-layout-path']) opts.ociLayoutPath = v['oci-layout-path'] as string;
  if (v['digest-file']) opts.digestFile = v['digest-file'] as string;
  if (v['image-name-with-digest-file']) opts.imageNameWithDigestFile = v['image-name-with-digest-file'] as string;
  if (v['image-name-tag-with-digest-file']) opts.imageNameTagWithDigestFile = v['image-name-tag-with-digest-file'] as string;
  if (compression) opts.compression = compression as 'gzip' | 'zstd';
  // Kaniko forwards the level only when it is > 0.
  if (level > 0) opts.compressionLevel = level;
  if (p.given.has('git')) (opts as BuildOptions & { git?: string }).git = v.git as string;
  if (p.given.has('kaniko-dir')) opts.workDir = v['kaniko-dir'] as string;
  // In the executor image, work under /kaniko as Kaniko does: an in-place build never wipes or
  // snapshots it, and a RUN that cleans /tmp cannot delete the build's layers and context.
  else if (statSync(KANIKO_DIR, { throwIfNoEntry: false })?.isDirectory()) opts.workDir = KANIKO_DIR;
  applyRunFlags(p, opts, io.env);
  if (v['compressed-caching'] === false) throw new UsageError('--compressed-caching=false is not supported: gantry never recompresses layers, cached or not');
  if (v.cache === true) {
    opts.cache = {
      enabled: true,
      ttl: v['cache-ttl'] as string,
      copyLayers: v['cache-copy-layers'] === true,
      runLayers: v['cache-run-layers'] !== false,
      noPush: v['no-push-cache'] === true,
    };
    if (v['cache-repo']) opts.cache.repo = v['cache-repo'] as string;
  }
  // Kaniko reads --cache-dir (default /cache) only with --cache=true; naming the directory
  // explicitly is asking for it too. A missing directory is an empty cache.
  if (v.cache === true || p.given.has('cache-dir')) opts.baseImageCache = { dir: v['cache-dir'] as string, ttl: v['cache-ttl'] as string };
  // What the inplace sandbox (unprivileged pods) takes from Kaniko's snapshot flags.
  const inplace: NonNullable<BuildOptions['inplace']> = {};
  if (p.given.has('snapshot-mode')) inplace.snapshotMode = v['snapshot-mode'] as 'full' | 'redo' | 'time';
  if (v['ignore-var-run'] === false) inplace.ignoreVarRun = false;
  if (v.force === true) inplace.force = true;
  const ignorePaths = (v['ignore-path'] as string[] | undefined) ?? [];
  if (ignorePaths.length > 0) inplace.ignorePaths = ignorePaths;
  if (Object.keys(inplace).length > 0) opts.inplace = inplace;
  return opts;
}

/** The final line: the digest and every place the image went. */
export function summarize(result: BuildResult): string {
  const places = [...result.pushed.map((p) => p.reference), ...result.outputs.map((o) => `${o.kind}:${o.path}`)];
  return `image ${result.digest}${places.length ? ` -> ${places.join(', ')}` : ''}`;
}

export async function executorCommand(args: string[], io: CliIO): Promise<number> {
  // `executor version`, as Kaniko has it.
  if (args[0] === 'version') {
    const { main } = await import('./main.js');
    return main(['version'], io);
  }
  const specs = [...executorFlags, helpFlag];
  const p = parseFlags(args, specs, io.env);
  if (p.values.help) {
    io.stdout(formatHelp(USAGE, DESCRIPTION, specs));
    return 0;
  }
  if (p.positionals.length > 0) throw new UsageError(`gantry executor takes no arguments, got "${p.positionals.join(' ')}"`, 'pass the context with --context');
  rejectUnsupported(p, specs, 'gantry executor');
  checkSatisfiedFlags(p);
  const logger = cliLogger(p.values.verbosity as string, p.values['log-format'] as string, p.values['log-timestamp'] === true, (l) => io.stderr(l + '\n'));
  const opts = executorOptions(p, io);
  const result = await build({ ...opts, logger });
  io.stdout(summarize(result) + '\n');
  return 0;
}
