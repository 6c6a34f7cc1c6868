import { GantryError } from '../util/errors.js';
import { parseDigest } from '../util/digest.js';

/**
 * An image reference with every default applied: `alpine` becomes
 * `{registry: 'docker.io', repository: 'library/alpine', tag: 'latest'}`. `registry` is the name
 * users and config files use (`docker.io`), not the API host (see `registryApiHost`).
 */
export interface Reference {
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
}

/** A repository without tag or digest, e.g. a cross-repo mount source or a cache repo. */
export interface Repository {
  registry: string;
  repository: string;
}

export const DOCKER_HUB = 'docker.io';
/** Docker Hub's registry API does not live on docker.io itself. */
export const DOCKER_HUB_API_HOST = 'registry-1.docker.io';
/** The config.json key docker login writes for Docker Hub. */
export const DOCKER_HUB_CONFIG_KEY = 'https://index.docker.io/v1/';
export const DEFAULT_TAG = 'latest';

const COMPONENT_RE = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;
// hostname (labels of letters/digits/hyphens), IPv4, or bracketed IPv6; optional port
const DOMAIN_RE = /^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$/;
const MAX_NAME_LENGTH = 255;

function invalid(input: string, why: string, hint?: string): GantryError {
  return new GantryError('REFERENCE_INVALID', `invalid reference "${input}": ${why}`, hint ? { hint, reference: input } : { reference: input });
}

/** `index.docker.io` is Docker Hub's legacy name; everything else keeps its spelling (lowercased). */
export function normalizeRegistry(registry: string): string {
  const lower = registry.toLowerCase();
  if (lower === 'index.docker.io') return DOCKER_HUB;
  return lower;
}

/** Host (with port) that serves `/v2/` for a registry name. */
export function registryApiHost(registry: string): string {
  const r = normalizeRegistry(registry);
  return r === DOCKER_HUB ? DOCKER_HUB_API_HOST : r;
}

/**
 * The first path component is a registry when it contains `.` or `:` or is `localhost`. Docker
 * also treats an uppercase first component as a host; we do not, because `MyUser/app` is far more
 * often a mistyped Hub name than a registry called `MyUser`, and "must be lowercase" helps more.
 */
function splitDomain(name: string): { registry: string; path: string; explicitRegistry: boolean } {
  const slash = name.indexOf('/');
  if (slash === -1) return { registry: DOCKER_HUB, path: name, explicitRegistry: false };
  const first = name.slice(0, slash);
  const isDomain = /[.:]/.test(first) || first === 'localhost';
  if (!isDomain) return { registry: DOCKER_HUB, path: name, explicitRegistry: false };
  return { registry: first, path: name.slice(slash + 1), explicitRegistry: true };
}

function parseName(input: string, name: string): Repository {
  if (name === '') throw invalid(input, 'repository name is empty');
  const { registry: rawRegistry, path } = splitDomain(name);
  if (!DOMAIN_RE.test(rawRegistry)) throw invalid(input, `"${rawRegistry}" is not a valid registry host[:port]`);
  const registry = normalizeRegistry(rawRegistry);
  if (path === '') throw invalid(input, 'repository name is empty');
  if (path !== path.toLowerCase()) {
    throw invalid(input, 'repository name must be lowercase', `use "${path.toLowerCase()}"; only tags may contain uppercase letters`);
  }
  for (const component of path.split('/')) {
    if (component === '') throw invalid(input, 'repository name has an empty path component');
    if (!COMPONENT_RE.test(component)) {
      throw invalid(input, `repository path component "${component}" may only contain a-z, 0-9 and separators (".", "_", "__", "-") between them`);
    }
  }
  const repository = registry === DOCKER_HUB && !path.includes('/') ? `library/${path}` : path;
  if (`${registry}/${repository}`.length > MAX_NAME_LENGTH) throw invalid(input, `name is longer than ${MAX_NAME_LENGTH} characters`);
  return { registry, repository };
}

export interface ParseReferenceOptions {
  /** Tag used when neither tag nor digest is given; `null` leaves both unset. Default `latest`. */
  defaultTag?: string | null;
}

/** Parses `[registry/]repository[:tag][@digest]` the way docker and go-containerregistry do. */
export function parseReference(input: string, opts: ParseReferenceOptions = {}): Reference {
  const trimmed = input.trim();
  if (trimmed === '') throw invalid(input, 'reference is empty');
  if (/\s/.test(trimmed)) throw invalid(input, 'reference contains whitespace');
  let rest = trimmed;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    try {
      parseDigest(digest);
    } catch (err) {
      throw invalid(input, `bad digest "${digest}": ${(err as Error).message}`, 'a digest looks like sha256:<64 lowercase hex characters>');
    }
  }
  let tag: string | undefined;
  // A colon after the last slash separates the tag; one before it belongs to the registry port.
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) {
      throw invalid(input, `bad tag "${tag}"`, 'tags are 1-128 characters of letters, digits, "_", "." and "-", not starting with "." or "-"');
    }
  }
  const { registry, repository } = parseName(input, rest);
  const ref: Reference = { registry, repository };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  const defaultTag = opts.defaultTag === undefined ? DEFAULT_TAG : opts.defaultTag;
  if (tag === undefined && digest === undefined && defaultTag !== null) ref.tag = defaultTag;
  return ref;
}

/** Parses `[registry/]repository` (no tag, no digest). */
export function parseRepository(input: string): Repository {
  const trimmed = input.trim();
  if (trimmed.includes('@')) throw invalid(input, 'a repository must not carry a digest');
  const lastSlash = trimmed.lastIndexOf('/');
  if (trimmed.lastIndexOf(':') > lastSlash) throw invalid(input, 'a repository must not carry a tag');
  return parseName(input, trimmed);
}

/** `registry/repository[:tag][@digest]`, fully qualified (always names the registry). */
export function formatReference(ref: Reference): string {
  let s = `${ref.registry}/${ref.repository}`;
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}

export function formatRepository(repo: Repository): string {
  return `${repo.registry}/${repo.repository}`;
}

/** What to ask the registry for: the digest when pinned (a tag is then informational), else the tag. */
export function manifestIdentifier(ref: Reference): string {
  const id = ref.digest ?? ref.tag;
  if (id === undefined) throw new GantryError('REFERENCE_INVALID', `reference ${formatReference(ref)} has neither tag nor digest`);
  return id;
}

export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag);
}
