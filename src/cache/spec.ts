/**
 * Cache locations as users write them: BuildKit's `--cache-to/--cache-from` CSV
 * (`type=local,dest=DIR`, `type=local,src=DIR`, `type=registry,ref=REPO`) and Kaniko's
 * `--cache-repo` (`registry/repo` or `oci:/path`).
 */
import { GantryError } from '../util/errors.js';
import { LocalCacheStore } from './local-store.js';
import { openCacheRepo, type RegistryCacheOptions } from './registry-store.js';
import type { CacheStore } from './store.js';

export type CacheSpec = { type: 'local'; dir: string } | { type: 'registry'; repository: string } | { type: 'oci'; dir: string };

function csv(spec: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of spec.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new GantryError('INVALID_ARGUMENT', `invalid cache option "${part}" in "${spec}": expected key=value`, { hint: 'e.g. type=local,dest=/tmp/cache or type=registry,ref=ghcr.io/me/app/cache' });
    out.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  }
  return out;
}

/** `direction` picks the key naming the directory of a local cache: `dest` to write, `src` to read. */
export function parseCacheSpec(spec: string, direction: 'to' | 'from'): CacheSpec {
  const s = spec.trim();
  if (!s.includes('=')) {
    if (s.startsWith('oci:')) return { type: 'oci', dir: s.slice(4) };
    return { type: 'registry', repository: s };
  }
  const kv = csv(s);
  const type = kv.get('type') ?? 'registry';
  if (type === 'local') {
    const want = direction === 'to' ? 'dest' : 'src';
    const dir = kv.get(want) ?? kv.get(direction === 'to' ? 'src' : 'dest');
    if (!dir) throw new GantryError('INVALID_ARGUMENT', `cache ${spec}: type=local needs ${want}=DIR`);
    return { type: 'local', dir };
  }
  if (type === 'registry') {
    const ref = kv.get('ref');
    if (!ref) throw new GantryError('INVALID_ARGUMENT', `cache ${spec}: type=registry needs ref=REPOSITORY`);
    return ref.startsWith('oci:') ? { type: 'oci', dir: ref.slice(4) } : { type: 'registry', repository: ref };
  }
  throw new GantryError('UNSUPPORTED', `cache ${spec}: type=${type} is not supported`, { hint: 'supported: type=local, type=registry (and oci:/path)' });
}

export function openCacheStore(spec: CacheSpec, opts: RegistryCacheOptions = {}): CacheStore {
  switch (spec.type) {
    case 'local':
      return new LocalCacheStore(spec.dir, opts);
    case 'oci':
      return openCacheRepo(`oci:${spec.dir}`, opts);
    case 'registry':
      return openCacheRepo(spec.repository, opts);
  }
}
