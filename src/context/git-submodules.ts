/**
 * `--git recurse-submodules=true`: every gitlink in the checked-out commit is fetched (the
 * recorded commit only, depth 1 where the server allows) and checked out at its path, to the
 * depth go-git's DefaultSubmoduleRecursionDepth (10) gives Kaniko. URLs come from .gitmodules;
 * relative ones resolve against the superproject's URL as git does.
 */
import * as fs from 'node:fs';
import { readFile, realpath, writeFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import * as git from 'isomorphic-git';
import { GantryError } from '../util/errors.js';
import { translateGitError } from './git-errors.js';
import { checkoutCommit, fetchPinnedCommit, initRepo, type FetchSession, type RepoTarget } from './git-fetch.js';

export const MAX_SUBMODULE_DEPTH = 10;

export interface SubmoduleEntry {
  name: string;
  path?: string;
  url?: string;
}

function unquote(v: string): string {
  const t = v.trim();
  return t.length >= 2 && t.startsWith('"') && t.endsWith('"') ? t.slice(1, -1).replace(/\\(.)/g, '$1') : t;
}

/** The `[submodule "name"]` sections of a .gitmodules file (git-config syntax, the common subset). */
export function parseGitmodules(text: string): SubmoduleEntry[] {
  const out: SubmoduleEntry[] = [];
  let current: SubmoduleEntry | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/^\s+/, '');
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const section = /^\[\s*submodule\s+"((?:[^"\\]|\\.)*)"\s*\]/.exec(line);
    if (section) {
      current = { name: section[1]!.replace(/\\(.)/g, '$1') };
      out.push(current);
      continue;
    }
    if (line.startsWith('[')) {
      current = undefined;
      continue;
    }
    const kv = /^([A-Za-z][A-Za-z0-9-]*)\s*=\s*(.*)$/.exec(line);
    if (!kv || !current) continue;
    const key = kv[1]!.toLowerCase();
    const value = unquote(kv[2]!.replace(/\s[#;].*$/, ''));
    if (key === 'path') current.path = value.replace(/\/+$/, '');
    else if (key === 'url') current.url = value;
  }
  return out;
}

/** `../lib.git` next to `https://host/org/app.git` is `https://host/org/lib.git`. */
export function resolveSubmoduleUrl(url: string, parentUrl: string): string {
  if (url.startsWith('./') || url.startsWith('../')) {
    return new URL(url, parentUrl.replace(/\/*$/, '/')).toString();
  }
  if (/^https?:\/\//i.test(url)) return url;
  throw new GantryError('UNSUPPORTED', `--git recurse-submodules=true: submodule URL ${url.replace(/\/\/[^/@]*@/, '//***@')} is not http(s) (SSH and git:// need clients gantry does not have)`, {
    hint: 'use https:// or relative submodule URLs, or check the repository out before the build and pass the directory',
  });
}

interface Gitlink {
  path: string;
  oid: string;
}

async function listGitlinks(t: RepoTarget, commit: string): Promise<Gitlink[]> {
  const links: Gitlink[] = [];
  await git.walk({
    fs,
    gitdir: t.gitdir,
    cache: t.cache,
    trees: [git.TREE({ ref: commit })],
    map: async (filepath, entries) => {
      const entry = entries[0];
      if (!entry) return null;
      if ((await entry.type()) === 'commit') links.push({ path: filepath, oid: await entry.oid() });
      return true;
    },
  });
  return links;
}

export interface SubmoduleOptions {
  /** Write `<path>/.git` files pointing at the module repositories (the git dir is kept). */
  linkGitDirs: boolean;
  depth?: number;
  signal?: AbortSignal;
}

/** Checks out the submodules of `parent` (already at `commit`); returns how many. */
export async function checkoutSubmodules(s: FetchSession, parent: RepoTarget, commit: string, opts: SubmoduleOptions): Promise<number> {
  const depth = opts.depth ?? MAX_SUBMODULE_DEPTH;
  let text: string;
  try {
    text = await readFile(join(parent.dir, '.gitmodules'), 'utf8');
  } catch {
    return 0;
  }
  const modules = parseGitmodules(text);
  const links = await listGitlinks(parent, commit);
  const rootReal = await realpath(parent.dir);
  let count = 0;
  for (const link of links) {
    opts.signal?.throwIfAborted();
    const mod = modules.find((m) => m.path === link.path);
    if (!mod || !mod.url) {
      s.logger.log('warn', `${parent.url}: gitlink ${link.path} has no url in .gitmodules; left empty`);
      continue;
    }
    const url = resolveSubmoduleUrl(mod.url, parent.url);
    const dir = join(parent.dir, link.path);
    const parentReal = await realpath(dirname(dir)).catch(() => undefined);
    if (parentReal && parentReal !== rootReal && !parentReal.startsWith(rootReal + sep)) {
      throw new GantryError('UNSAFE_PATH', `submodule path ${link.path} in ${parent.url} leads outside the checkout through a symlink`);
    }
    const target: RepoTarget = { url, dir, gitdir: join(parent.gitdir, 'modules', mod.name), cache: {} };
    try {
      await initRepo(target);
      const oid = await fetchPinnedCommit(s, target, link.oid);
      const sub = await checkoutCommit(target, oid);
      if (opts.linkGitDirs) await writeFile(join(dir, '.git'), `gitdir: ${relative(dir, target.gitdir)}\n`);
      count++;
      if (depth > 1) count += await checkoutSubmodules(s, target, sub, { ...opts, depth: depth - 1 });
    } catch (err) {
      const e = translateGitError(err, url, s.credentials, opts.signal);
      throw new GantryError(e.code, `submodule ${link.path}: ${e.message}`, { ...e.details }, { cause: err });
    }
  }
  return count;
}
