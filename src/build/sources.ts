/**
 * Finding COPY/ADD sources in a source tree (the build context after .dockerignore, or another
 * stage's root filesystem): wildcard patterns matched per path component with Go's
 * filepath.Match rules (`*`, `?`, `[...]`, `[^...]`, `\` escapes) as BuildKit does, symlinks
 * resolved inside the tree, excluded paths invisible.
 */
import { lstatSync, readdirSync, type Stats } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { IgnoreMatcher, ParentMatch } from '../dockerfile/index.js';
import { resolveComponentsInRoot } from '../fs/unpack/index.js';
import { GantryError } from '../util/errors.js';

/** A tree COPY reads from. */
export interface SourceTree {
  /** Host directory that is `/` of the tree. */
  dir: string;
  /** .dockerignore of the build context; undefined for stage and image trees. */
  ignore?: IgnoreMatcher;
  /** Context files are sent as 0:0 (as BuildKit's file transfer does); stage files keep their owners. */
  resetOwners: boolean;
  /** Names the tree in messages: `build context`, `stage build`. */
  name: string;
  /** Materialised for this build only (git, tarball, stdin context): nothing about it is worth remembering. */
  temporary?: boolean;
}

/** One path inside a tree, relative, `/`-separated, '' for the root. */
export interface TreeEntry {
  rel: string;
  host: string;
  stat: Stats;
}

const WILDCARD = /[*?[\\]/;

export function hasWildcard(pattern: string): boolean {
  return WILDCARD.test(pattern);
}

/** A path as written in COPY made relative to the tree root: `./a/../b/` -> `b`, `/` -> ``. */
export function cleanSourcePath(p: string): string {
  const norm = posix.normalize('/' + p);
  return norm === '/' ? '' : norm.replace(/^\/+/, '').replace(/\/+$/, '');
}

/** Go's filepath.Match for one path component, compiled to a RegExp. */
export function compileComponent(pattern: string): RegExp {
  let re = '^';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '\\') {
      i++;
      if (i >= pattern.length) throw badPattern(pattern);
      re += escapeRe(pattern[i]!);
    } else if (c === '[') {
      let j = i + 1;
      let cls = '';
      if (pattern[j] === '^') {
        cls += '^';
        j++;
      }
      let first = true;
      for (; j < pattern.length && (first || pattern[j] !== ']'); j++) {
        first = false;
        let ch = pattern[j]!;
        if (ch === '\\') {
          j++;
          if (j >= pattern.length) throw badPattern(pattern);
          ch = pattern[j]!;
        }
        cls += ch === '-' && pattern[j - 1] !== '\\' ? '-' : escapeRe(ch);
      }
      if (j >= pattern.length) throw badPattern(pattern);
      if (cls === '' || cls === '^') throw badPattern(pattern);
      re += `[${cls}]`;
      i = j;
    } else re += escapeRe(c);
  }
  return new RegExp(re + '$', 's');
}

function escapeRe(c: string): string {
  return /[\\^$.*+?()[\]{}|/-]/.test(c) ? '\\' + c : c;
}

function badPattern(pattern: string): GantryError {
  return new GantryError('DOCKERFILE_INVALID', `syntax error in pattern: ${pattern}`, { hint: 'check the brackets and backslashes of the wildcard' });
}

function isExcluded(tree: SourceTree, rel: string): boolean {
  return rel !== '' && tree.ignore !== undefined && tree.ignore.matches(rel);
}

/** lstat of a tree path, resolving symlinks in its parent components inside the tree. */
export async function lstatInTree(tree: SourceTree, rel: string, followFinal = false): Promise<TreeEntry | undefined> {
  const parts = rel === '' ? [] : resolveComponentsInRoot(tree.dir, rel, { followFinal });
  const host = join(tree.dir, ...parts);
  try {
    return { rel, host, stat: await lstat(host) };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

/**
 * The tree paths a COPY source names: one for a literal path that exists and is not excluded,
 * every match (sorted) for a wildcard pattern, none otherwise.
 */
export async function matchSource(tree: SourceTree, source: string): Promise<string[]> {
  const rel = cleanSourcePath(source);
  if (!hasWildcard(rel)) {
    if (isExcluded(tree, rel)) return [];
    return (await lstatInTree(tree, rel)) ? [rel] : [];
  }
  let candidates = [''];
  for (const part of rel.split('/')) {
    const next: string[] = [];
    if (!hasWildcard(part)) {
      for (const c of candidates) {
        const p = c === '' ? part : `${c}/${part}`;
        if (await lstatInTree(tree, p)) next.push(p);
      }
    } else {
      const re = compileComponent(part);
      for (const c of candidates) {
        const dir = await lstatInTree(tree, c, true);
        if (!dir?.stat.isDirectory()) continue;
        const names = (await readdir(dir.host)).sort(byteOrder);
        for (const n of names) if (re.test(n)) next.push(c === '' ? n : `${c}/${n}`);
      }
    }
    candidates = next;
    if (candidates.length === 0) break;
  }
  return candidates.filter((c) => !isExcluded(tree, c));
}

/**
 * UTF-8 byte order without encoding: UTF-16 code units order like UTF-8 bytes except surrogates
 * against U+E000..U+FFFF, so only a difference at a unit >= 0xD800 needs the bytes.
 */
export function byteOrder(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return x < 0xd800 && y < 0xd800 ? (x < y ? -1 : 1) : Buffer.compare(Buffer.from(a), Buffer.from(b));
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

/**
 * Everything below a directory of the tree, parents before children in lexical order, with
 * .dockerignore and `--exclude` applied. Paths in the result are relative to `dirRel`. An
 * excluded directory is still listed when something inside it is re-included by an exception.
 */
export async function walkTree(tree: SourceTree, dir: TreeEntry, excludes?: IgnoreMatcher): Promise<TreeEntry[]> {
  const out: TreeEntry[] = [];
  const ctxParent = tree.ignore && dir.rel !== '' ? tree.ignore.matchesWithParent(dir.rel, undefined).info : undefined;
  await walk(tree, dir.host, dir.rel, '', ctxParent, undefined, excludes, [], out);
  return out;
}

async function walk(
  tree: SourceTree,
  host: string,
  treeRel: string,
  rel: string,
  ctxParent: ParentMatch | undefined,
  exParent: ParentMatch | undefined,
  excludes: IgnoreMatcher | undefined,
  pending: TreeEntry[],
  out: TreeEntry[],
): Promise<void> {
  // Synchronous listing: thousands of tiny calls in order, where a thread-pool round trip each
  // costs more than the call (see RootWriter).
  const names = readdirSync(host).sort(byteOrder);
  // `host` is already normalised and a listed name is never `.`, `..` or contains `/`: plain
  // concatenation gives what join() would, without re-normalising every path.
  const prefix = host.endsWith('/') ? host : `${host}/`;
  for (const name of names) {
    const childTree = treeRel === '' ? name : `${treeRel}/${name}`;
    const childRel = rel === '' ? name : `${rel}/${name}`;
    const childHost = prefix + name;
    // Gone since the listing: skipped, as if listed a moment later.
    const stat = lstatSync(childHost, { throwIfNoEntry: false });
    if (!stat) continue;
    const ctx = tree.ignore?.matchesWithParent(childTree, ctxParent);
    const ex = excludes?.matchesWithParent(childRel, exParent);
    const excluded = (ctx?.excluded ?? false) || (ex?.excluded ?? false);
    const entry: TreeEntry = { rel: childRel, host: childHost, stat };
    if (stat.isDirectory()) {
      if (excluded) {
        const skippable = (!ctx?.excluded || tree.ignore!.canSkipDirectory(childTree)) && (!ex?.excluded || excludes!.canSkipDirectory(childRel));
        if (skippable) continue;
        pending.push(entry);
        await walk(tree, childHost, childTree, childRel, ctx?.info, ex?.info, excludes, pending, out);
        if (pending[pending.length - 1] === entry) pending.pop();
        continue;
      }
      flush(pending, out);
      out.push(entry);
      await walk(tree, childHost, childTree, childRel, ctx?.info, ex?.info, excludes, pending, out);
      continue;
    }
    if (excluded) continue;
    flush(pending, out);
    out.push(entry);
  }
}

function flush(pending: TreeEntry[], out: TreeEntry[]): void {
  out.push(...pending);
  pending.length = 0;
}
