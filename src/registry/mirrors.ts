import { GantryError } from '../util/errors.js';
import type { ResolvedRegistryOptions } from './options.js';
import { DOCKER_HUB, normalizeRegistry, type Reference } from './reference.js';

/** One place a pull may be served from. */
export interface PullSource {
  registry: string;
  repository: string;
  /** `mirror`/`map` sources are best effort; `origin` is the reference itself. */
  via: 'mirror' | 'map' | 'origin';
}

/**
 * Splits a mirror/map target `host[/path/prefix]` the way Kaniko does: everything after the first
 * slash is prepended to the repository (`mirror.gcr.io/hub` + `library/alpine` ->
 * `mirror.gcr.io` / `hub/library/alpine`).
 */
export function parseMirrorTarget(target: string): { registry: string; prefix: string } {
  const trimmed = target.trim().replace(/^https?:\/\//, '').replace(/\/+$/, '');
  if (trimmed === '') throw new GantryError('INVALID_ARGUMENT', `empty registry mirror/map target "${target}"`);
  const slash = trimmed.indexOf('/');
  if (slash === -1) return { registry: normalizeRegistry(trimmed), prefix: '' };
  return { registry: normalizeRegistry(trimmed.slice(0, slash)), prefix: `${trimmed.slice(slash + 1)}/` };
}

/**
 * The ordered list of (registry, repository) to try for a pull. Kaniko's semantics: mirrors are
 * registry maps for Docker Hub appended after any explicit `docker.io` maps; maps apply to the
 * registry they name; the original comes last unless `skipDefaultRegistryFallback` is set and
 * at least one mapping applied. Pushes never use this.
 */
export function pullSources(ref: Reference, opts: ResolvedRegistryOptions): PullSource[] {
  const registry = normalizeRegistry(ref.registry);
  const sources: PullSource[] = [];
  const seen = new Set<string>();
  const add = (s: PullSource) => {
    const key = `${s.registry}/${s.repository}`;
    if (seen.has(key)) return;
    seen.add(key);
    sources.push(s);
  };
  for (const target of opts.registryMaps.get(registry) ?? []) {
    const { registry: to, prefix } = parseMirrorTarget(target);
    add({ registry: to, repository: prefix + ref.repository, via: 'map' });
  }
  if (registry === DOCKER_HUB) {
    for (const target of opts.mirrors) {
      const { registry: to, prefix } = parseMirrorTarget(target);
      add({ registry: to, repository: prefix + ref.repository, via: 'mirror' });
    }
  }
  if (sources.length === 0 || !opts.skipDefaultRegistryFallback) add({ registry, repository: ref.repository, via: 'origin' });
  return sources;
}
