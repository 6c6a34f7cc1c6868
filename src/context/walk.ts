/**
 * Walks a build-context directory through the .dockerignore filter, the way BuildKit's file
 * sender (fsutil) does: lexical depth-first order, entries relative and slash-separated,
 * symlinks not followed. An excluded directory is skipped without being read only when no
 * exception pattern could re-include something below it; otherwise it is read, and emitted
 * just before the first entry inside it that is included (so parents always precede children).
 */
import type { Stats } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { GantryError, wrapError } from '../util/errors.js';
import type { ParentMatch } from '../dockerfile/ignore/index.js';

export type WalkEntryType = 'file' | 'dir' | 'symlink' | 'other';

export interface WalkEntry {
  /** Relative to the context root, `/`-separated, no leading `./`. */
  path: string;
  type: WalkEntryType;
  stat: Stats;
}

/** What the walker needs from a matcher; IgnoreMatcher implements it. */
export interface WalkMatcher {
  matchesWithParent(path: string, parent: ParentMatch | undefined): { excluded: boolean; info: ParentMatch };
  canSkipDirectory(dir: string): boolean;
}

export interface WalkOptions {
  /** Called for every excluded directory that was skipped without being read. */
  onPrune?: (dir: string) => void;
}

function typeOf(st: Stats): WalkEntryType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  return 'other';
}

/** Go sorts names as byte strings; JS compares UTF-16 units, which differs above U+FFFF. */
function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

interface Pending {
  entry: WalkEntry;
  emitted: boolean;
}

export async function* walkContext(root: string, matcher?: WalkMatcher, opts: WalkOptions = {}): AsyncGenerator<WalkEntry> {
  let rootStat: Stats;
  try {
    rootStat = await lstat(root);
  } catch (err) {
    throw wrapError(err, `reading build context ${root}`, 'CONTEXT_INVALID');
  }
  if (!rootStat.isDirectory()) {
    throw new GantryError('CONTEXT_INVALID', `build context ${root} is not a directory`, { hint: 'pass a directory, a tarball or a git URL as the context' });
  }
  yield* walkDir(root, '', undefined, [], matcher, opts);
}

async function* walkDir(
  abs: string,
  rel: string,
  parent: ParentMatch | undefined,
  pending: Pending[],
  matcher: WalkMatcher | undefined,
  opts: WalkOptions,
): AsyncGenerator<WalkEntry> {
  let names: string[];
  try {
    names = await readdir(abs);
  } catch (err) {
    throw wrapError(err, `reading build context directory ${abs}`);
  }
  names.sort(byteOrder);
  for (const name of names) {
    const path = rel === '' ? name : `${rel}/${name}`;
    const full = join(abs, name);
    let stat: Stats;
    try {
      stat = await lstat(full);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // removed while walking
      throw wrapError(err, `reading ${full}`);
    }
    const entry: WalkEntry = { path, type: typeOf(stat), stat };
    const m = matcher ? matcher.matchesWithParent(path, parent) : undefined;
    const excluded = m?.excluded ?? false;
    if (entry.type === 'dir') {
      if (excluded) {
        if (matcher!.canSkipDirectory(path)) {
          opts.onPrune?.(path);
          continue;
        }
        pending.push({ entry, emitted: false });
        yield* walkDir(full, path, m?.info, pending, matcher, opts);
        pending.pop();
        continue;
      }
      yield* flush(pending);
      yield entry;
      yield* walkDir(full, path, m?.info, pending, matcher, opts);
      continue;
    }
    if (excluded) continue;
    yield* flush(pending);
    yield entry;
  }
}

function* flush(pending: Pending[]): Generator<WalkEntry> {
  for (const p of pending) {
    if (p.emitted) continue;
    p.emitted = true;
    yield p.entry;
  }
}
