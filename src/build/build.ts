/**
 * `build(options)`: Dockerfile + context -> image -> outputs. The order matters for users:
 * everything that can fail cheaply fails before any work (Dockerfile errors, no RUN sandbox here,
 * base images that do not resolve, push permission), stages then run dependencies first (up to
 * two at a time), and outputs are written only once the image is complete.
 *
 * With the inplace sandbox every stage is built in the one sandbox root (`/` in the executor
 * image), one stage at a time; the builder's own files (work dir, context, credentials, outputs)
 * are on the sandbox's ignore list, and registry names are resolved through a resolver captured
 * before the first base image replaces /etc.
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { lookup as dnsLookup } from 'node:dns';
import type { LookupFunction } from 'node:net';
import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { openContext } from '../context/index.js';
import { injectOnbuild, loadDockerignore, parseDockerfile, planBuild, type BuildPlan, type Instruction } from '../dockerfile/index.js';
import { defaultCacheRepo } from '../cache/index.js';
import { RegistryClient, checkPushPermission, normalizeRegistry, parseReference, pullScope, pushScope } from '../registry/index.js';
import { captureResolver, type CapturedResolver } from '../run/index.js';
import { GantryError, wrapError } from '../util/errors.js';
import { limiter } from '../util/limit.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { openBaseImageCache, resolveImage, type ResolvedImage } from './base.js';
import { runStage } from './executor.js';
import { defaultRunCacheDir, RunContext } from './run-context.js';
import { openBuildCache, type BuildCache } from './cache.js';
import { BuiltImage, exportDockerArchive, exportOciLayout, imageStages, LayerUploads, pushImage, writeBuilderOutput, writeDigestFiles } from './export.js';
import { LayerStore } from './layers.js';
import { defaultLayerIndexDir, LayerIndexStore } from '../fs/index.js';
import { formatTime, omitEmpty } from './metadata.js';
import type { BuildOptions, BuildResult } from './options.js';
import type { BuildSession, BuiltStage, PreparedStage } from './session.js';
import type { SourceTree } from './sources.js';
import { baseLayers, RootFs } from './stage.js';
import { openUnpackedLayerStore } from './layer-farm.js';

/** Stages run at the same time at most (independent stages only). */
const STAGE_CONCURRENCY = 2;

/**
 * The Dockerfile as given (relative to cwd), else relative to the context (Kaniko's rule). When
 * none was given, `Dockerfile` in the context comes first (docker's default), then in the cwd.
 */
async function findDockerfile(given: string | undefined, contextDir: string): Promise<string> {
  const candidates = given === undefined ? [join(contextDir, 'Dockerfile'), resolve('Dockerfile')] : isAbsolute(given) ? [given] : [resolve(given), join(contextDir, given)];
  for (const c of candidates) {
    const st = await stat(c).catch(() => undefined);
    if (st?.isFile()) return c;
  }
  throw new GantryError('NOT_FOUND', `Dockerfile ${given ?? 'Dockerfile'} not found (tried ${candidates.join(', ')})`, {
    hint: 'pass the Dockerfile path with --dockerfile/-f, relative to the current directory or to the context',
  });
}

/** SOURCE_DATE_EPOCH from the build args or the environment, in seconds. */
function sourceDateEpoch(opts: BuildOptions, env: NodeJS.ProcessEnv): number | undefined {
  const raw = opts.buildArgs?.SOURCE_DATE_EPOCH ?? env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d+$/.test(raw)) throw new GantryError('INVALID_ARGUMENT', `SOURCE_DATE_EPOCH must be a whole number of seconds, got "${raw}"`);
  return Number(raw);
}

/**
 * What the builder keeps inside the inplace root and must not lose to a wipe nor put in a
 * layer: its work dir, the context, DOCKER_CONFIG, the RUN cache dir and the outputs.
 */
function builderDirs(options: BuildOptions, env: NodeJS.ProcessEnv, workDir: string, contextDir: string, cacheDir: string): string[] {
  const dirs = [workDir, contextDir, cacheDir];
  // Credentials are read again at push time, after the wipes: keep where they live.
  const docker = env.DOCKER_CONFIG || options.registry?.dockerConfigDir || (env.HOME ? join(env.HOME, '.docker') : undefined);
  if (docker) dirs.push(resolve(docker));
  if (env.REGISTRY_AUTH_FILE) dirs.push(resolve(env.REGISTRY_AUTH_FILE));
  for (const f of [options.tarPath, options.ociLayoutPath, options.digestFile, options.imageNameWithDigestFile, options.imageNameTagWithDigestFile, options.baseImageCache?.dir]) {
    if (f) dirs.push(resolve(f));
  }
  if (options.defaultOutputDir !== false) dirs.push(resolve(options.defaultOutputDir ?? 'gantry-out'));
  const root = options.inplace?.root ?? '/';
  // In-root paths: those outside a relocated root are never touched anyway.
  return dirs.flatMap((d) => (root === '/' ? [d] : d === root || d.startsWith(root.replace(/\/+$/, '') + '/') ? [d.slice(root.replace(/\/+$/, '').length) || '/'] : []));
}

const hasRun = (instructions: readonly Instruction[]) => instructions.some((i) => i.kind === 'run');

export async function build(options: BuildOptions): Promise<BuildResult> {
  const env = options.env ?? process.env;
  const logger: Logger = options.logger ?? silentLogger;
  // One failing stage stops the others: they would only keep working on a build that is lost.
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  let captured: CapturedResolver | undefined;
  const lookup = ((host: string, opts: object, cb: (...a: unknown[]) => void) =>
    captured ? captured.lookup(host, opts as never, cb as never) : dnsLookup(host, opts as never, cb as never)) as unknown as LookupFunction;
  const registryOptions = { ...(options.registry ?? {}), logger: options.registry?.logger ?? logger, env: options.registry?.env ?? env, lookup: options.registry?.lookup ?? lookup };
  const client = new RegistryClient(registryOptions);
  const warming = new AbortController();
  warmUpRegistries(client, options, warming.signal);
  const baseCache = openBaseImageCache(options, logger);
  const workRoot = options.workDir ?? tmpdir();
  const workDir = await mkdtemp(join(workRoot, 'gantry-build-'));
  let cleanupContext: (() => Promise<void>) | undefined;
  const opened: ResolvedImage[] = [];
  let cache: BuildCache | undefined;
  let layerIndex: LayerIndexStore | undefined;
  let uploads: LayerUploads | undefined;
  try {
    const ctx = await openContext(options.context, {
      ...(options.contextSubPath ? { subPath: options.contextSubPath } : {}),
      env,
      workDir,
      ...(signal ? { signal } : {}),
      logger,
    });
    cleanupContext = ctx.cleanup;
    const dockerfilePath = await findDockerfile(options.dockerfile, ctx.dir);
    const text = await readFile(dockerfilePath, 'utf8').catch((err: unknown) => {
      throw wrapError(err, `reading ${dockerfilePath}`);
    });
    const fileName = options.dockerfile ?? 'Dockerfile';
    const parsed = parseDockerfile(text, { file: fileName });
    const plan = planBuild(parsed, {
      buildArgs: options.buildArgs ?? {},
      env,
      ...(options.target ? { target: options.target } : {}),
      ...(options.platform ? { targetPlatform: options.platform } : {}),
      includeUnreachable: options.skipUnusedStages === false,
    });
    for (const w of plan.warnings) logger.log('warn', w.message, { rule: w.rule });
    warmUpMountToken(client, options, plan, warming.signal);
    const runContext = new RunContext({
      sandbox: options.sandbox ?? 'auto',
      secrets: options.secrets ?? {},
      env,
      cacheDir: options.cacheDir ?? defaultRunCacheDir(env),
      network: options.network ?? 'default',
      addHosts: options.addHosts ?? [],
      workDir,
      logger,
      ...(options.inplace ? { inplace: options.inplace } : {}),
    });
    const epoch = sourceDateEpoch(options, env);
    const destinations = options.destinations ?? [];
    for (const d of destinations) parseReference(d);

    // What can still fail cheaply runs at the same time (the sandbox probe's child processes,
    // .dockerignore, push permission and base images: round trips), and fails in this order, the
    // order of a sequential check. A Dockerfile with RUN learns here, before any download, whether
    // it can run here; an explicit --sandbox=inplace builds in place even without RUN (Kaniko's
    // only model).
    const needsSandbox = options.sandbox === 'inplace' || plan.order.some((i) => hasRun(plan.stages[i]!.instructions));
    const [sandboxKind, ignore, , prepared] = await settleInOrder(
      [
        needsSandbox ? runContext.sandbox() : Promise.resolve(undefined),
        loadDockerignore({ contextDir: ctx.dir, dockerfile: dockerfilePath }),
        options.noPush || options.skipPushPermissionCheck
          ? Promise.resolve()
          : Promise.all(
              destinations.map((d) =>
                checkPushPermission(d, registryOptions, client, signal).catch((err: unknown) => {
                  const e = err instanceof GantryError ? err : wrapError(err, `checking push permission for ${d}`);
                  e.details.hint ??= 'check the credentials for this registry (docker login / config.json) or pass --skip-push-permission-check';
                  throw e;
                }),
              ),
            ),
        prepareStages(plan, client, signal, opened, baseCache),
      ] as const,
      () => stop.abort(),
    );
    if (sandboxKind === 'inplace') {
      // Every stage is built in the sandbox's root from here on; name resolution is captured
      // now, before the image's /etc replaces ours (src/run/inplace-dns.ts).
      captured = captureResolver();
      runContext.inplaceSandbox(builderDirs(options, env, workDir, ctx.dir, runContext.opts.cacheDir));
      if ((options.inplace?.root ?? '/') === '/' && !/^\/(kaniko|gantry)(\/|$)/.test(workDir)) {
        logger.log('warn', `building in place with the work directory ${workDir}: it is kept out of layers, but a RUN that deletes it (rm -rf /tmp/*) breaks the build; pass a work directory under /kaniko (--kaniko-dir)`);
      }
    }
    // A context extracted for this build only gets no hash index: it would never be hit again.
    const context: SourceTree = { dir: ctx.dir, ignore: ignore.matcher, resetOwners: true, name: 'build context', ...(ctx.temporary ? { temporary: true } : {}) };
    // In place, HOME is inside the root that RUNs snapshot: indexes then live in the work dir,
    // for this build only (a Kaniko pod builds once anyway).
    const local = (name: string, dir: string) => (runContext.inplace ? join(workDir, name) : dir);
    if (options.cache?.enabled) {
      cache = openBuildCache(options.cache, { destinations, client, platform: plan.targetPlatform, logger, env, ...(runContext.inplace ? { contextIndexDir: local('context-index', '') } : {}) });
    }

    const now = new Date(Math.floor(Date.now() / 1000) * 1000);
    const created = options.reproducible ? new Date((epoch ?? 0) * 1000) : epoch !== undefined ? new Date(epoch * 1000) : now;
    const store = new LayerStore(join(workDir, 'blobs'));
    // New layers of the image start uploading as soon as they are written (export.ts).
    if (!options.noPush && destinations.length > 0) {
      const up = (uploads = new LayerUploads({ client, destinations, stages: imageStages(plan), signal }));
      store.onWrite((layer, stage) => up.start(layer, stage));
    }
    const steps: BuildResult['steps'] = [];
    // One root for all stages in place: they take turns.
    const limit = limiter(runContext.inplace ? 1 : STAGE_CONCURRENCY);
    const running = new Map<number, Promise<BuiltStage>>();
    const images = new Map<string, Promise<SourceTree>>();
    const single = plan.order.length === 1;
    layerIndex = new LayerIndexStore(local('layer-index', defaultLayerIndexDir(env)));
    const session: BuildSession = {
      plan,
      prepared,
      context,
      store,
      layerOptions: {
        compression: options.compression ?? 'gzip',
        ...(options.compressionLevel !== undefined && options.compressionLevel > 0 ? { level: options.compressionLevel } : {}),
        ...(options.reproducible ? { clampMtime: epoch ?? 0 } : {}),
      },
      client,
      workDir,
      created,
      now: options.reproducible ? created : now,
      logger,
      signal,
      steps,
      run: runContext,
      ...(cache ? { cache } : {}),
      layerIndex,
      ...(baseCache ? { baseImages: baseCache } : {}),
      // Not in place: the store would sit inside the root that is wiped and snapshotted.
      unpackedLayers: runContext.inplace ? undefined : openUnpackedLayerStore(env, logger),
      stageLabel: (i) => (single ? '' : `${plan.stages[i]!.name ?? `stage-${i}`} `),
      stage(index: number): Promise<BuiltStage> {
        let p = running.get(index);
        if (!p) {
          const prep = prepared.get(index);
          if (!prep) return Promise.reject(new GantryError('INTERNAL', `stage ${index} was not planned`));
          p = (async () => {
            const deps = await Promise.all(prep.needs.map((n) => session.stage(n)));
            const base = prep.planned.base;
            const parent = base.kind === 'stage' ? deps[prep.needs.indexOf(base.index)] : undefined;
            return limit(() => store.inStage(index, () => runStage(session, prep, parent)));
          })();
          running.set(index, p);
        }
        return p;
      },
      imageFiles(ref: string): Promise<SourceTree> {
        let p = images.get(ref);
        if (!p) {
          const dir = join(workDir, `image-${images.size}`);
          p = (async () => {
            const img = await resolveImage(ref, plan.targetPlatform, client, signal, baseCache);
            opened.push(img);
            const fs = new RootFs(dir, session.layerIndex, session.unpackedLayers);
            return { dir: await fs.catchUp(baseLayers(img), signal), resetOwners: false, name: `image ${ref}` };
          })();
          images.set(ref, p);
        }
        return p;
      },
    };

    // Every planned stage runs (Kaniko builds unreachable ones too when asked); the target is the image.
    const settled = await Promise.allSettled(
      plan.order.map((i) =>
        session.stage(i).catch((err: unknown) => {
          stop.abort();
          throw err;
        }),
      ),
    );
    const failures = settled.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    if (failures.length > 0) throw failures.find((e) => !(e instanceof GantryError && e.code === 'ABORTED')) ?? failures[0];
    const target = await session.stage(plan.target);
    const config = structuredClone(target.image.config);
    config.created = formatTime(created);
    if (options.platform) {
      config.os = plan.targetPlatform.os;
      config.architecture = plan.targetPlatform.architecture;
      if (plan.targetPlatform.variant) config.variant = plan.targetPlatform.variant;
      else delete config.variant;
    }
    if (options.labels && Object.keys(options.labels).length > 0) {
      config.config = { ...(config.config ?? {}), Labels: { ...(config.config?.Labels ?? {}), ...options.labels } };
    }
    const image = new BuiltImage(omitEmpty(config), target.image.layers);
    const digest = image.manifest.digest;
    logger.log('info', `built image ${digest} (config ${image.config.descriptor.digest})`, { digest, imageId: image.config.descriptor.digest });

    const result: BuildResult = {
      digest,
      imageId: image.config.descriptor.digest,
      manifestMediaType: image.manifest.mediaType,
      pushed: [],
      outputs: [],
      steps,
    };
    await writeDigestFiles(options, digest, destinations);
    const refTags = [...new Set(destinations.map((d) => parseReference(d).tag ?? 'latest'))];
    if (options.ociLayoutPath) {
      await exportOciLayout(image, options.ociLayoutPath, refTags.length ? refTags : ['latest'], signal);
      result.outputs.push({ kind: 'oci-layout', path: resolve(options.ociLayoutPath) });
      logger.log('info', `wrote OCI layout ${resolve(options.ociLayoutPath)}`);
    }
    if (options.tarPath) {
      await exportDockerArchive(image, options.tarPath, destinations, signal);
      result.outputs.push({ kind: 'docker-archive', path: resolve(options.tarPath) });
      logger.log('info', `wrote docker archive ${resolve(options.tarPath)}`);
    }
    if (!options.noPush) {
      const mount = target.image.base?.repository;
      for (const d of destinations) {
        const pushed = await pushImage(image, d, {
          client,
          retries: options.pushRetry ?? 0,
          logger,
          ...(mount ? { mountFrom: mount } : {}),
          ...(signal ? { signal } : {}),
          ...(options.pushBackoffMs !== undefined ? { backoffMs: options.pushBackoffMs } : {}),
          ...(uploads ? { uploads } : {}),
        });
        result.pushed.push({ reference: d, digest: pushed });
        logger.log('info', `pushed ${d}@${pushed}`, { reference: d, digest: pushed });
      }
    }
    if (result.pushed.length === 0 && result.outputs.length === 0 && options.defaultOutputDir !== false) {
      const dir = resolve(options.defaultOutputDir ?? 'gantry-out');
      await exportOciLayout(image, dir, refTags.length ? refTags : ['latest'], signal);
      result.outputs.push({ kind: 'oci-layout', path: dir });
      logger.log('info', `wrote OCI layout ${dir} (nothing was pushed)`);
    }
    if (cache) {
      // Cache writes ran in the background; they are warnings at worst (the store logs them).
      const results = await cache.store.flush();
      const failed = results.filter((r) => !r.ok).length;
      logger.log('info', `layer cache ${cache.store.name}: ${steps.filter((st) => st.cached).length} hits, ${results.length - failed} layers stored${failed ? `, ${failed} not stored` : ''}`);
    }
    const builderOutput = env.BUILDER_OUTPUT;
    if (builderOutput && result.pushed.length > 0) await writeBuilderOutput(builderOutput, result.pushed);
    return result;
  } finally {
    warming.abort();
    await uploads?.cancel();
    if (cache) await cache.store.close?.().catch(() => undefined);
    await Promise.allSettled(opened.map((o) => o.reader.close?.()));
    await client.close().catch(() => undefined);
    if (cleanupContext) await cleanupContext().catch(() => undefined);
    // Index saves run in the background; one still running would recreate its directory (in the
    // work dir when building in place) after the removal, or be cut off at exit.
    await layerIndex?.flush();
    await rm(workDir, { recursive: true, force: true, maxRetries: 3 }).catch(() => undefined);
  }
}

/**
 * Opens connections ahead of the first real requests, while the context and Dockerfile are read:
 * the ping (and token, where the registry wants one) of each destination and of the registry
 * cache. Failures are left to the requests that need them, which report them with their context.
 */
function warmUpRegistries(client: RegistryClient, options: BuildOptions, signal: AbortSignal): void {
  const destinations = options.destinations ?? [];
  const targets: Array<{ ref: string; scope: (repository: string) => string }> = [];
  if (!options.noPush) for (const d of destinations) targets.push({ ref: d, scope: pushScope });
  const cacheRepo = options.cache?.enabled && !options.cache.noLookup && !options.cache.from?.length && !options.cache.to?.length ? (options.cache.repo ?? defaultCacheRepo(destinations)) : undefined;
  if (cacheRepo && !cacheRepo.startsWith('oci:')) targets.push({ ref: cacheRepo, scope: pullScope });
  for (const t of targets) {
    // An invalid reference is reported where it is used.
    const ref = attempt(() => parseReference(t.ref));
    if (ref) void client.warmUp(ref.registry, [t.scope(ref.repository)], signal);
  }
}

/**
 * A push offers the registry a cross-repository mount from the base image's repository for each
 * blob the destination lacks (the config, new in every build, always). On a token registry that
 * takes a token of its own (push here, pull there): fetched now rather than at the very end.
 */
function warmUpMountToken(client: RegistryClient, options: BuildOptions, plan: BuildPlan, signal: AbortSignal): void {
  if (options.noPush) return;
  let stage = plan.stages[plan.target];
  for (let hops = 0; stage?.base.kind === 'stage' && hops < plan.stages.length; hops++) stage = plan.stages[stage.base.index];
  if (stage?.base.kind !== 'image') return;
  const ref = stage.base.ref;
  const base = attempt(() => parseReference(ref));
  if (!base) return;
  for (const d of options.destinations ?? []) {
    const dest = attempt(() => parseReference(d));
    if (dest && normalizeRegistry(dest.registry) === normalizeRegistry(base.registry) && dest.repository !== base.repository) {
      void client.warmUp(dest.registry, [pushScope(dest.repository), pullScope(base.repository)], signal);
    }
  }
}

/** The value, or undefined where it throws (e.g. a reference that is not a registry's). */
function attempt<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

/**
 * Waits for tasks that run at the same time, but fails with the first failure in list order (the
 * one a sequential run would have met first). After a failure `abort` stops the others, which are
 * waited for, so nothing is left running against a build that is being torn down.
 */
async function settleInOrder<T extends readonly unknown[]>(tasks: { readonly [K in keyof T]: Promise<T[K]> }, abort: () => void): Promise<T> {
  for (const t of tasks) t.catch(() => undefined);
  const out: unknown[] = [];
  try {
    for (const t of tasks) out.push(await t);
  } catch (err) {
    abort();
    await Promise.allSettled(tasks);
    throw err;
  }
  return out as unknown as T;
}

/**
 * Resolves the base image of every planned stage (concurrently), puts ONBUILD triggers in
 * place and works out each stage's dependencies.
 */
async function prepareStages(plan: BuildPlan, client: RegistryClient, signal: AbortSignal | undefined, opened: ResolvedImage[], baseCache?: ReturnType<typeof openBaseImageCache>): Promise<Map<number, PreparedStage>> {
  const wanted = new Set(plan.order);
  // Stages named in FROM of planned stages are planned too (the plan includes them in order).
  const bases = new Map<number, ResolvedImage>();
  await Promise.all(
    plan.order.map(async (i) => {
      const st = plan.stages[i]!;
      if (st.base.kind !== 'image') return;
      const img = await resolveImage(st.base.ref, st.platform ?? plan.targetPlatform, client, signal, baseCache);
      opened.push(img);
      bases.set(i, img);
    }),
  );
  const prepared = new Map<number, PreparedStage>();
  for (const i of plan.order) {
    const st = plan.stages[i]!;
    let triggers: string[] = [];
    const base = bases.get(i);
    if (base) triggers = [...(base.config.config?.OnBuild ?? [])];
    else if (st.base.kind === 'stage') {
      const parent = prepared.get(st.base.index);
      triggers = (parent?.instructions ?? plan.stages[st.base.index]!.instructions).flatMap((inst) => (inst.kind === 'onbuild' ? [inst.expression] : []));
    }
    const injected = injectOnbuild(st, triggers, plan);
    const needs = [...new Set(injected.dependencies.map((d) => d.stage))].sort((a, b) => a - b);
    for (const n of needs) {
      if (!wanted.has(n)) throw new GantryError('INTERNAL', `stage ${i} depends on stage ${n}, which is not planned`);
    }
    const p: PreparedStage = { planned: injected, instructions: injected.instructions, needs, triggers, triggerInstructions: injected.instructions.length - st.instructions.length };
    if (base) p.base = base;
    prepared.set(i, p);
  }
  return prepared;
}
