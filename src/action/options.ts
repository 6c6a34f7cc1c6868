import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import type { BuildOptions } from '../build/index.js';
import { GantryError } from '../util/errors.js';
import type { ActionInputs } from './inputs.js';
import { parseAttributes, splitKeyValue } from './list.js';

/** What the workflow run tells every step through its environment. */
export interface GitHubContext {
  serverUrl: string;
  repository: string;
  sha: string;
  ref: string;
  actor: string;
  workspace: string;
  runnerTemp: string;
}

export function githubContext(env: NodeJS.ProcessEnv): GitHubContext {
  return {
    serverUrl: (env.GITHUB_SERVER_URL || 'https://github.com').replace(/\/+$/, ''),
    repository: env.GITHUB_REPOSITORY ?? '',
    sha: env.GITHUB_SHA ?? '',
    ref: env.GITHUB_REF ?? '',
    actor: env.GITHUB_ACTOR ?? '',
    workspace: env.GITHUB_WORKSPACE ?? process.cwd(),
    runnerTemp: env.RUNNER_TEMP || tmpdir(),
  };
}

/** What the inputs become, plus what the step reports about how it read them. */
export interface MappedInputs {
  options: BuildOptions;
  /** Registries the image is pushed to (for credentials and hints). */
  pushRegistries: string[];
  /** Whether the context is the workflow's own repository fetched by git (the default). */
  defaultGitContext: boolean;
  /** Things changed on the user's behalf (lower-cased GHCR names), shown as notices. */
  notices: string[];
}

const GHCR = 'ghcr.io';

/** The registry part of an image name, Docker's rule: the first component if it has `.`/`:` or is localhost. */
export function registryOf(name: string): string {
  const slash = name.indexOf('/');
  if (slash < 0) return 'docker.io';
  const first = name.slice(0, slash);
  if (!/[.:]/.test(first) && first !== 'localhost') return 'docker.io';
  const lower = first.toLowerCase();
  return lower === 'index.docker.io' ? 'docker.io' : lower;
}

/**
 * GHCR names are lower-case, and `ghcr.io/${{ github.repository }}` carries the owner's and
 * repository's capitals: the repository part is lower-cased (the tag keeps its case).
 */
export function lowerCaseGhcr(tag: string): string {
  if (registryOf(tag) !== GHCR) return tag;
  let name = tag;
  let suffix = '';
  const at = name.indexOf('@');
  if (at >= 0) {
    suffix = name.slice(at);
    name = name.slice(0, at);
  }
  const colon = name.lastIndexOf(':');
  if (colon > name.lastIndexOf('/')) {
    suffix = name.slice(colon) + suffix;
    name = name.slice(0, colon);
  }
  return name.toLowerCase() + suffix;
}

/** build-push-action's default context: the workflow's repository at its ref, fetched with git. */
export function defaultGitContext(gh: GitHubContext): string | undefined {
  if (!gh.repository) return undefined;
  const url = new URL(gh.serverUrl);
  // Kaniko's form pins both: the ref is fetched, the exact commit checked out.
  if (gh.ref && gh.sha) return `git://${url.host}/${gh.repository}#${gh.ref}#${gh.sha}`;
  return `${gh.serverUrl}/${gh.repository}.git#${gh.ref || gh.sha || ''}`.replace(/#$/, '');
}

/**
 * `{{defaultContext}}` as build-push-action expands it (`{{defaultContext}}:sub/dir`): the
 * commit, except for pull request refs, which are fetched by name.
 */
function buildkitGitContext(gh: GitHubContext): string {
  let ref = gh.ref;
  if (gh.sha && ref && !ref.startsWith('refs/')) ref = `refs/heads/${ref}`;
  if (gh.sha && !ref.startsWith('refs/pull/')) ref = gh.sha;
  return `${gh.serverUrl}/${gh.repository}.git#${ref}`;
}

function nonNegativeInt(value: string, input: string): number {
  const n = Number(value);
  if (value === '' || !Number.isInteger(n) || n < 0) throw new GantryError('INVALID_ARGUMENT', `input "${input}" must be a whole number >= 0, got "${value}"`);
  return n;
}

function parseLabelList(items: string[], input: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items) {
    const [k, v] = splitKeyValue(item);
    if (k === '' || v === undefined) throw new GantryError('INVALID_ARGUMENT', `input "${input}": "${item}" is not key=value`);
    out[k] = v;
  }
  return out;
}

function parseBuildArgList(items: string[]): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const item of items) {
    const [k, v] = splitKeyValue(item);
    if (!/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(k)) {
      throw new GantryError('INVALID_ARGUMENT', `input "build-args": "${item}" is not KEY=VALUE or KEY`, { hint: 'one build argument per line; quote a value holding commas only if you also use commas as separators' });
    }
    out[k] = v;
  }
  return out;
}

function parseCertificates(items: string[], workspace: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const item of items) {
    const [registry, path] = splitKeyValue(item);
    if (!registry || !path) throw new GantryError('INVALID_ARGUMENT', `input "registry-certificate": "${item}" is not registry=path/to/ca.crt`);
    (out[registry] ??= []).push(isAbsolute(path) ? path : resolve(workspace, path));
  }
  return out;
}

interface OutputPlan {
  push: boolean;
  names: string[];
  ociLayoutPath?: string;
  tarPath?: string;
  compression?: 'gzip' | 'zstd';
  compressionLevel?: number;
}

const IMAGE_ATTRS = new Set(['type', 'name', 'push', 'compression', 'compression-level', 'oci-mediatypes', 'dest', 'tar']);

/** `outputs` in BuildKit's exporter syntax, limited to what gantry writes: registry, image, oci (directory), docker (file). */
export function parseOutputs(items: string[], workspace: string): OutputPlan {
  const plan: OutputPlan = { push: false, names: [] };
  const bad = (item: string, why: string, hint: string) => new GantryError('UNSUPPORTED', `input "outputs": "${item}": ${why}`, { hint, input: 'outputs' });
  for (const item of items) {
    const attrs = item.includes('=') ? parseAttributes(item) : { type: 'local', dest: item };
    const type = attrs.type ?? '';
    for (const k of Object.keys(attrs)) {
      if (!IMAGE_ATTRS.has(k)) throw bad(item, `attribute "${k}" is not supported`, 'supported: type, name, push, dest, tar, compression, compression-level');
    }
    if (attrs['oci-mediatypes'] === 'false') throw bad(item, 'oci-mediatypes=false is not supported', 'gantry writes OCI media types');
    const dest = attrs.dest ? (isAbsolute(attrs.dest) ? attrs.dest : resolve(workspace, attrs.dest)) : undefined;
    switch (type) {
      case 'registry':
      case 'image':
        if (type === 'registry' || attrs.push === 'true') plan.push = true;
        if (attrs.name) plan.names.push(...attrs.name.split(',').map((n) => n.trim()).filter(Boolean));
        break;
      case 'oci':
        if (!dest) throw bad(item, 'type=oci needs dest=<directory>', 'add dest=path/to/dir,tar=false');
        if (attrs.tar !== 'false') throw bad(item, 'OCI tarballs are not written yet', 'add tar=false to get an OCI layout directory, or use type=docker,dest=image.tar');
        plan.ociLayoutPath = dest;
        break;
      case 'docker':
        if (!dest) throw bad(item, 'loading into a Docker daemon is not supported (gantry is daemonless)', 'add dest=image.tar to write a docker-archive file');
        plan.tarPath = dest;
        break;
      default:
        throw bad(item, `exporter type "${type || 'local'}" is not supported`, 'use type=registry, type=image, type=oci,dest=DIR,tar=false or type=docker,dest=FILE');
    }
    if (attrs.compression !== undefined) {
      if (attrs.compression !== 'gzip' && attrs.compression !== 'zstd') throw bad(item, `compression "${attrs.compression}" is not supported`, 'use gzip or zstd');
      plan.compression = attrs.compression;
    }
    if (attrs['compression-level'] !== undefined) plan.compressionLevel = nonNegativeInt(attrs['compression-level'], 'outputs compression-level');
  }
  return plan;
}

/**
 * A BuildKit-style `type=local` directory is relative to the workspace, as build-push-action reads
 * it from the step's working directory, and a `ghcr.io` cache repository is lower-cased like the
 * tags; everything else in the spec is passed on as written.
 */
function normalizeCacheSpec(spec: string, workspace: string): string {
  const attrs = parseAttributes(spec);
  const type = (attrs.type ?? '').toLowerCase();
  if (type === 'local') {
    return Object.entries(attrs)
      .map(([k, v]) => ((k === 'src' || k === 'dest') && v !== '' ? `${k}=${resolve(workspace, v)}` : `${k}=${v}`))
      .join(',');
  }
  if (type === 'registry' && attrs.ref && lowerCaseGhcr(attrs.ref) !== attrs.ref) {
    return Object.entries(attrs).map(([k, v]) => `${k}=${k === 'ref' ? lowerCaseGhcr(v) : v}`).join(',');
  }
  return spec;
}

/**
 * The layer cache, as the CLIs map it: `cache-from`/`cache-to` as `gantry build` does (every step
 * cached, `no-cache` stores without reading), `cache`/`cache-repo`/`cache-ttl` as the Kaniko
 * executor does (RUN layers only, default repository `<first tag's repository>/cache`).
 */
export function mapCache(inputs: ActionInputs, workspace: string): BuildOptions['cache'] {
  const buildkit = inputs.cacheFrom.length > 0 || inputs.cacheTo.length > 0;
  if (buildkit && (inputs.cache || inputs.cacheRepo !== '')) {
    throw new GantryError('INVALID_ARGUMENT', 'inputs "cache-from"/"cache-to" and Kaniko\'s "cache"/"cache-repo" both choose where the layer cache lives', {
      hint: 'use cache-to: type=registry,ref=REPO (or cache: true with cache-repo: REPO), not both',
    });
  }
  if (!buildkit && !inputs.cache) {
    for (const name of ['cache-repo', 'cache-ttl'] as const) {
      if ((name === 'cache-repo' ? inputs.cacheRepo : inputs.cacheTtl) !== '') {
        throw new GantryError('INVALID_ARGUMENT', `input "${name}" has no effect without "cache: true" (or cache-from/cache-to)`, { hint: 'add cache: true, or remove it' });
      }
    }
    return undefined;
  }
  let cache: NonNullable<BuildOptions['cache']>;
  if (buildkit) {
    const to = inputs.cacheTo.map((s) => normalizeCacheSpec(s, workspace));
    // no-cache without a cache-to reads nothing and writes nothing: no cache at all.
    if (inputs.noCache && to.length === 0) return undefined;
    const from = inputs.noCache ? [] : inputs.cacheFrom.map((s) => normalizeCacheSpec(s, workspace));
    // BuildKit caches every step, file copies included.
    cache = { enabled: true, copyLayers: true, from, to };
  } else {
    cache = { enabled: true, copyLayers: false, runLayers: true };
    if (inputs.cacheRepo !== '') cache.repo = lowerCaseGhcr(inputs.cacheRepo);
  }
  if (inputs.noCache) cache.noLookup = true;
  if (inputs.cacheTtl !== '') cache.ttl = inputs.cacheTtl;
  return cache;
}

/**
 * Maps the inputs to BuildOptions. `created` is the build time used for the
 * org.opencontainers.image.created label.
 */
export function mapInputs(inputs: ActionInputs, gh: GitHubContext, env: NodeJS.ProcessEnv, created: Date): MappedInputs {
  const notices: string[] = [];
  const out = parseOutputs(inputs.outputs, gh.workspace);
  const destinations: string[] = [];
  for (const raw of [...inputs.tags, ...out.names]) {
    const tag = lowerCaseGhcr(raw);
    if (tag !== raw) notices.push(`GHCR repository names must be lower-case: pushing ${tag} instead of ${raw}`);
    if (!destinations.includes(tag)) destinations.push(tag);
  }
  const push = inputs.push || out.push;
  if (push && destinations.length === 0) {
    throw new GantryError('INVALID_ARGUMENT', 'nothing to push: "push" is true but "tags" is empty', { hint: 'add tags: registry/owner/image:tag' });
  }

  const template = inputs.context.includes('{{defaultContext}}');
  let context = inputs.context;
  let isDefault = false;
  if (template) {
    if (!gh.repository) throw new GantryError('INVALID_ARGUMENT', 'input "context" uses {{defaultContext}} but GITHUB_REPOSITORY is not set');
    context = context.split('{{defaultContext}}').join(buildkitGitContext(gh));
    isDefault = true;
  } else if (context === '') {
    const git = defaultGitContext(gh);
    context = git ?? '.';
    isDefault = git !== undefined;
  }
  const local = !/^[a-z][a-z0-9+.-]*:\/\//i.test(context) && !context.startsWith('github.com/') && !/\.git(#|$)/.test(context);
  if (local) context = resolve(gh.workspace, context);

  const labels: Record<string, string> = {};
  if (gh.repository) labels['org.opencontainers.image.source'] = `${gh.serverUrl}/${gh.repository}`;
  if (gh.sha) labels['org.opencontainers.image.revision'] = gh.sha;
  labels['org.opencontainers.image.created'] = created.toISOString();
  Object.assign(labels, parseLabelList(inputs.labels, 'labels'));

  const registry: NonNullable<BuildOptions['registry']> = { env };
  if (inputs.registryMirrors.length > 0) registry.mirrors = inputs.registryMirrors;
  if (inputs.insecureRegistries.length > 0) registry.insecure = inputs.insecureRegistries;
  if (inputs.registryCertificates.length > 0) registry.caFiles = parseCertificates(inputs.registryCertificates, gh.workspace);

  const options: BuildOptions = {
    context,
    buildArgs: parseBuildArgList(inputs.buildArgs),
    labels,
    destinations,
    noPush: !push,
    registry,
    env,
    // Never litter the checkout: an image that goes nowhere else lands in the runner's temp dir.
    defaultOutputDir: join(gh.runnerTemp, 'gantry-image'),
  };
  if (inputs.file) {
    // build-push-action resolves `file` against the workspace, not the context.
    options.dockerfile = local || isAbsolute(inputs.file) ? resolve(gh.workspace, inputs.file) : inputs.file;
  } else if (local) {
    options.dockerfile = join(context, 'Dockerfile');
  }
  if (inputs.target) options.target = inputs.target;
  if (inputs.platforms.length === 1) options.platform = inputs.platforms[0]!;
  if (inputs.pushRetry !== '') options.pushRetry = nonNegativeInt(inputs.pushRetry, 'push-retry');
  if (inputs.reproducible) options.reproducible = true;
  if (out.ociLayoutPath) options.ociLayoutPath = out.ociLayoutPath;
  if (out.tarPath) options.tarPath = out.tarPath;
  if (out.compression) options.compression = out.compression;
  if (out.compressionLevel !== undefined) options.compressionLevel = out.compressionLevel;

  const cache = mapCache(inputs, gh.workspace);
  if (cache) options.cache = cache;

  const pushRegistries = push ? [...new Set(destinations.map(registryOf))] : [];
  return { options, pushRegistries, defaultGitContext: isDefault, notices };
}
