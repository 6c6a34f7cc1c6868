import { GantryError } from '../util/errors.js';

/**
 * The little reference handling docker-archive needs: `docker save` records tags in their
 * "familiar" form (`alpine:3.20`, `ghcr.io/o/app:1`) and containerd's annotation in the full form
 * (`docker.io/library/alpine:3.20`). Full reference parsing lives in src/registry.
 */

export interface TaggedName {
  /** Full repository name, e.g. `docker.io/library/alpine`. */
  repository: string;
  tag: string;
}

const NAME_RE = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

/** Parses `name[:tag]` (tag defaults to latest); refuses digests, which cannot be RepoTags. */
export function parseTaggedName(ref: string): TaggedName {
  const bad = (why: string) => new GantryError('REFERENCE_INVALID', `invalid image name "${ref}" for a docker archive: ${why}`, { hint: 'use NAME:TAG, e.g. myapp:1.0' });
  if (ref.includes('@')) throw bad('a digest cannot be a tag in a docker archive');
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  let name = ref;
  let tag = 'latest';
  if (colon > slash) {
    name = ref.slice(0, colon);
    tag = ref.slice(colon + 1);
  }
  if (!TAG_RE.test(tag)) throw bad(`"${tag}" is not a valid tag`);
  const parts = name.split('/');
  let domain = 'docker.io';
  const first = parts[0]!;
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase())) {
    domain = first;
    parts.shift();
  }
  if (domain === 'index.docker.io') domain = 'docker.io';
  if (domain === 'docker.io' && parts.length === 1) parts.unshift('library');
  const path = parts.join('/');
  if (!NAME_RE.test(path)) throw bad(`"${path}" is not a valid repository name (lower-case letters, digits, separators)`);
  return { repository: `${domain}/${path}`, tag };
}

/** `docker.io/library/alpine` -> `alpine`, `docker.io/o/app` -> `o/app`, others unchanged. */
export function familiarName(repository: string): string {
  if (repository.startsWith('docker.io/library/') && repository.split('/').length === 3) return repository.slice('docker.io/library/'.length);
  if (repository.startsWith('docker.io/')) return repository.slice('docker.io/'.length);
  return repository;
}

export function familiarString(t: TaggedName): string {
  return `${familiarName(t.repository)}:${t.tag}`;
}

export function fullString(t: TaggedName): string {
  return `${t.repository}:${t.tag}`;
}

/** Whether two references name the same tag (`alpine` == `docker.io/library/alpine:latest`). */
export function sameTaggedName(a: string, b: string): boolean {
  try {
    return fullString(parseTaggedName(a)) === fullString(parseTaggedName(b));
  } catch {
    return a === b;
  }
}
