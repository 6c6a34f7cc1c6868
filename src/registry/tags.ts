import { GantryError } from '../util/errors.js';
import type { RegistryClient } from './client.js';
import { pullScope } from './auth/scope.js';
import type { Repository } from './reference.js';
import { readLimited } from './response-error.js';
import { headerValue } from './transport.js';

const PAGE_SIZE = 1000;
const MAX_PAGES = 10_000;

/** The `rel="next"` target of a Link header (RFC 8288), relative to `base`. */
export function nextLink(link: string | undefined, base: URL): URL | undefined {
  if (!link) return undefined;
  for (const part of link.split(/,(?=\s*<)/)) {
    const m = /^\s*<([^>]*)>(.*)$/.exec(part);
    if (m && /;\s*rel="?next"?/i.test(m[2]!)) return new URL(m[1]!, base);
  }
  return undefined;
}

/** Every tag of a repository, following `Link` pagination (GHCR and Hub page at 100). */
export async function listTags(client: RegistryClient, repo: Repository, opts: { signal?: AbortSignal; pageSize?: number } = {}): Promise<string[]> {
  const signal = opts.signal;
  const what = `listing tags of ${repo.registry}/${repo.repository}`;
  const tags: string[] = [];
  let path: string | URL = `/v2/${repo.repository}/tags/list?n=${opts.pageSize ?? PAGE_SIZE}`;
  for (let page = 0; page < MAX_PAGES; page++) {
    const res = await client.request({
      registry: repo.registry,
      method: 'GET',
      path,
      headers: { accept: 'application/json' },
      scopes: [pullScope(repo.repository)],
      expect: [200],
      ctx: { what, kind: 'tags' },
      signal,
    });
    const text = await readLimited(res.body, 32 * 1024 * 1024, 'tag list');
    let parsed: { tags?: unknown };
    try {
      parsed = JSON.parse(text) as { tags?: unknown };
    } catch {
      throw new GantryError('REGISTRY_ERROR', `${what}: the answer is not JSON`);
    }
    if (Array.isArray(parsed.tags)) for (const t of parsed.tags) if (typeof t === 'string') tags.push(t);
    const next = nextLink(headerValue(res.headers, 'link'), res.url);
    if (!next) return tags;
    path = next;
  }
  throw new GantryError('REGISTRY_ERROR', `${what}: more than ${MAX_PAGES} pages`);
}
