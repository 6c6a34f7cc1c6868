import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { BaseImageCache, DEFAULT_BASE_CACHE_DIR, parseGoDuration } from '../cache/index.js';
import { parseDockerfile, planBuild } from '../dockerfile/index.js';
import { hostPlatform, parsePlatform, type Platform } from '../oci/index.js';
import { RegistryClient, RegistryImageReader, parseReference, type Reference } from '../registry/index.js';
import { GantryError, wrapError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { parseBuildArgs } from './build-options.js';
import { formatHelp, parseFlags, rejectUnsupported, UsageError, type FlagSpec, type ParsedFlags } from './flags.js';
import { cliLogger } from './log.js';
import { mergedRegistryOptions, registryFlags } from './registry-flags.js';
import type { CliIO } from './main.js';

const USAGE = 'gantry warmer [flags]   (also installed as /kaniko/warmer in the executor image)';
const DESCRIPTION = `Downloads base images into a cache directory for "gantry executor --cache-dir", with the flags of
Kaniko's warmer. Images already cached (same digest, younger than --cache-ttl) are not downloaded again.`;

/** Kaniko's warmer flags (cmd/warmer/cmd/root.go), same names, shorthands and defaults. */
export const warmerFlags: FlagSpec[] = [
  { name: 'image', short: 'i', kind: 'list', valueName: 'image', help: 'image to cache; repeat for several' },
  { name: 'dockerfile', short: 'd', kind: 'string', valueName: 'path|url', help: 'also cache the base images of this Dockerfile (its FROM and COPY --from images)' },
  { name: 'build-arg', kind: 'list', valueName: 'KEY[=VALUE]', help: 'build argument for the FROM lines of --dockerfile' },
  { name: 'cache-dir', short: 'c', kind: 'string', default: DEFAULT_BASE_CACHE_DIR, valueName: 'dir', help: 'directory of the cache (default /cache)' },
  { name: 'force', short: 'f', kind: 'bool', help: 'download again even when the image is cached' },
  { name: 'cache-ttl', kind: 'string', default: '336h', valueName: 'duration', help: 'cached images older than this are downloaded again (default 336h)' },
  { name: 'custom-platform', aliases: ['customPlatform'], kind: 'string', valueName: 'os/arch[/variant]', help: 'platform to cache (default: this host\'s)' },
  ...registryFlags,
  { name: 'verbosity', short: 'v', kind: 'string', default: 'info', valueName: 'level', help: 'trace, debug, info, warn, error, fatal, panic' },
  { name: 'log-format', kind: 'string', default: 'color', valueName: 'text|color|json', help: 'log format' },
  { name: 'log-timestamp', kind: 'bool', help: 'timestamps in text logs' },
  { name: 'help', short: 'h', kind: 'bool', help: 'show this help' },
];

export interface WarmerPlan {
  cacheDir: string;
  ttlMs: number;
  force: boolean;
  platform: Platform;
  /** Images named with --image, then the Dockerfile's, without repeats. */
  images: string[];
}

async function readDockerfile(location: string): Promise<{ text: string; file: string }> {
  if (/^https?:\/\//.test(location)) {
    const res = await fetch(location).catch((err: unknown) => {
      throw wrapError(err, `downloading Dockerfile ${location}`);
    });
    if (!res.ok) throw new GantryError('NOT_FOUND', `downloading Dockerfile ${location}: HTTP ${res.status}`);
    return { text: await res.text(), file: location };
  }
  const file = resolve(location);
  const text = await readFile(file, 'utf8').catch((err: unknown) => {
    throw new GantryError('NOT_FOUND', `reading Dockerfile ${file}: ${(err as Error).message}`, { hint: 'pass a valid path to a Dockerfile with --dockerfile' });
  });
  return { text, file };
}

/**
 * The registry images a Dockerfile starts from (FROM, `COPY --from=<image>`, after ARG expansion),
 * for every stage: scratch and earlier stages are not images.
 */
export function dockerfileImages(text: string, file: string, buildArgs: Record<string, string | undefined>, platform: Platform, env: NodeJS.ProcessEnv): string[] {
  const plan = planBuild(parseDockerfile(text, { file }), { buildArgs, env, targetPlatform: platform, includeUnreachable: true });
  const out: string[] = [];
  for (const st of plan.stages) {
    if (st.base.kind === 'image') out.push(st.base.ref);
    for (const img of st.images) out.push(img.ref);
  }
  return out;
}

export async function warmerPlan(p: ParsedFlags, env: NodeJS.ProcessEnv): Promise<WarmerPlan> {
  const v = p.values;
  const platform = v['custom-platform'] ? parsePlatform(v['custom-platform'] as string) : hostPlatform();
  const images = [...(v.image as string[])];
  if (v.dockerfile) {
    const { text, file } = await readDockerfile(v.dockerfile as string);
    images.push(...dockerfileImages(text, file, parseBuildArgs(v['build-arg'] as string[]), platform, env));
  }
  if (images.length === 0) throw new UsageError('no image to cache', 'pass --image=IMAGE (repeatable) or --dockerfile=PATH');
  for (const i of images) if (i.startsWith('oci:') || i.startsWith('docker-archive:')) throw new UsageError(`--image ${i}: only registry images can be cached`, 'a local layout or archive is read from disk anyway');
  return {
    cacheDir: v['cache-dir'] as string,
    ttlMs: parseGoDuration(v['cache-ttl'] as string),
    force: v.force === true,
    platform,
    images: [...new Set(images)],
  };
}

/**
 * Warms every image; like Kaniko, an image that fails is a warning, and the run fails only when
 * no image at all could be cached.
 */
export async function warmImages(plan: WarmerPlan, client: RegistryClient, logger: Logger, signal?: AbortSignal): Promise<{ warmed: number; failed: number }> {
  const cache = new BaseImageCache({ dir: plan.cacheDir, ttlMs: plan.ttlMs, logger });
  let failed = 0;
  for (const image of plan.images) {
    let reference: Reference;
    try {
      reference = parseReference(image);
      const reader = new RegistryImageReader({ reference, client });
      const r = await cache.warm(reference, plan.platform, reader, { force: plan.force, ...(signal ? { signal } : {}) });
      logger.log('info', r.downloaded ? `cached ${image} as ${r.digest} in ${r.dir}` : `${image} is already in the cache (${r.digest})`, { image, digest: r.digest });
    } catch (err) {
      failed++;
      const e = wrapError(err, `caching ${image}`);
      logger.log('warn', `${e.message}${e.hint ? ` (${e.hint})` : ''}`, { image });
    }
  }
  if (failed === plan.images.length) throw new GantryError('REGISTRY_ERROR', `could not cache any of the ${plan.images.length} image(s)`, { hint: 'see the warnings above' });
  return { warmed: plan.images.length - failed, failed };
}

export async function warmerCommand(args: string[], io: CliIO): Promise<number> {
  const p = parseFlags(args, warmerFlags, io.env);
  if (p.values.help) {
    io.stdout(formatHelp(USAGE, DESCRIPTION, warmerFlags));
    return 0;
  }
  if (p.positionals.length > 0) throw new UsageError(`gantry warmer takes no arguments, got "${p.positionals.join(' ')}"`, 'name images with --image');
  rejectUnsupported(p, warmerFlags, 'gantry warmer');
  const logger = cliLogger(p.values.verbosity as string, p.values['log-format'] as string, p.values['log-timestamp'] === true, (l) => io.stderr(l + '\n'));
  const plan = await warmerPlan(p, io.env);
  const client = new RegistryClient({ ...mergedRegistryOptions(p, io.env), logger });
  try {
    await warmImages(plan, client, logger);
  } finally {
    await client.close().catch(() => undefined);
  }
  return 0;
}
