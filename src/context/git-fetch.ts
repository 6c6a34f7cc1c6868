/**
 * Fetch primitives over isomorphic-git shared by the context clone and its submodules: set up an
 * empty repository, fetch one ref shallowly, or get hold of one pinned commit as cheaply as the
 * server allows.
 */
import * as fs from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import * as git from 'isomorphic-git';
import { GantryError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import { isFullCommit, type GitCredentials } from './location.js';

/** What every fetch of one clone (and its submodules) shares. */
export interface FetchSession {
  http: git.HttpClient;
  /** Only for error hints: the transport attaches them, to their own origin only. */
  credentials?: GitCredentials;
  logger: Logger;
  onMessage: (line: string) => void;
}

export interface RepoTarget {
  url: string;
  dir: string;
  gitdir: string;
  /** isomorphic-git's object cache for this repository. */
  cache: object;
}

export interface ResolvedRef {
  fullref: string;
  oid: string;
}

export interface ErrorWithData {
  code?: string;
  data?: { statusCode?: number; what?: string };
  message?: string;
}

export function httpStatusOf(err: unknown): number | undefined {
  const e = err as ErrorWithData | undefined;
  return e?.code === 'HttpError' ? e.data?.statusCode : undefined;
}

/** A repository with an `origin` remote (isomorphic-git needs its fetch refspec). */
export async function initRepo(t: RepoTarget): Promise<void> {
  await mkdir(t.dir, { recursive: true });
  await git.init({ fs, dir: t.dir, gitdir: t.gitdir });
  await git.addRemote({ fs, gitdir: t.gitdir, remote: 'origin', url: t.url, force: true });
}

export async function fetchRefShallow(s: FetchSession, t: RepoTarget, ref: ResolvedRef): Promise<void> {
  s.logger.log('info', `fetching ${t.url} ${ref.fullref} (depth 1)`);
  await git.fetch({ fs, http: s.http, gitdir: t.gitdir, url: t.url, remoteRef: ref.fullref, singleBranch: true, depth: 1, tags: false, cache: t.cache, onMessage: s.onMessage });
}

async function hasCommit(t: RepoTarget, oid: string): Promise<boolean> {
  try {
    await git.readCommit({ fs, gitdir: t.gitdir, oid, cache: t.cache });
    return true;
  } catch {
    return false;
  }
}

async function findCommit(t: RepoTarget, oid: string): Promise<string | undefined> {
  let full = oid;
  if (!isFullCommit(oid)) {
    try {
      full = await git.expandOid({ fs, gitdir: t.gitdir, oid, cache: t.cache });
    } catch {
      return undefined;
    }
  }
  return (await hasCommit(t, full)) ? full : undefined;
}

/**
 * A pinned commit is fetched by itself at depth 1 when it is a full SHA (git's smart HTTP lets
 * a client want any commit reachable from a ref). When that is refused, or the SHA is
 * abbreviated, the ref's whole history is fetched, then every branch's (what Kaniko's
 * non-single-branch clone would have had). Returns the full commit id.
 */
export async function fetchPinnedCommit(s: FetchSession, t: RepoTarget, pinned: string, resolved?: ResolvedRef): Promise<string> {
  const { logger } = s;
  if (isFullCommit(pinned)) {
    try {
      logger.log('info', `fetching ${t.url} commit ${pinned} (depth 1)`);
      await git.fetch({ fs, http: s.http, gitdir: t.gitdir, url: t.url, remoteRef: pinned, singleBranch: true, depth: 1, tags: false, cache: t.cache, onMessage: s.onMessage });
      if (await hasCommit(t, pinned)) return pinned;
    } catch (err) {
      const status = httpStatusOf(err);
      if (status === 401 || status === 403) throw err;
      logger.log('debug', `the server did not serve commit ${pinned} directly (${(err as Error).message}); fetching history`);
    }
    // Start over: a shallow boundary left by the attempt would cut the history fetched next.
    await rm(t.gitdir, { recursive: true, force: true });
    for (const key of Reflect.ownKeys(t.cache)) Reflect.deleteProperty(t.cache, key);
    await initRepo(t);
  }
  if (resolved) {
    logger.log('info', `fetching ${t.url} ${resolved.fullref} (full history, to find ${pinned})`);
    await git.fetch({ fs, http: s.http, gitdir: t.gitdir, url: t.url, remoteRef: resolved.fullref, singleBranch: true, tags: false, cache: t.cache, onMessage: s.onMessage });
    const found = await findCommit(t, pinned);
    if (found) return found;
  }
  logger.log('info', `fetching every branch of ${t.url} to find ${pinned}`);
  await git.fetch({ fs, http: s.http, gitdir: t.gitdir, url: t.url, singleBranch: false, tags: true, cache: t.cache, onMessage: s.onMessage });
  const found = await findCommit(t, pinned);
  if (found) return found;
  throw new GantryError('NOT_FOUND', `commit ${pinned} not found in git repository ${t.url}${resolved ? ` (searched ${resolved.fullref} and every branch)` : ''}`, {
    hint: 'check the commit SHA; it must be reachable from a branch or from the ref in the URL',
  });
}

/** Writes the tree of `oid` into the working directory; returns the commit (tags peeled). */
export async function checkoutCommit(t: RepoTarget, oid: string): Promise<string> {
  await git.checkout({ fs, dir: t.dir, gitdir: t.gitdir, ref: oid, force: true, cache: t.cache });
  return git.resolveRef({ fs, gitdir: t.gitdir, ref: 'HEAD' });
}
