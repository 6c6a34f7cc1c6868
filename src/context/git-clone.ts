/**
 * Materialises a git build context with isomorphic-git (pure JS: the executor image has no git
 * binary). We fetch only what the build needs: a depth-1 fetch of one ref, or of the pinned
 * commit itself; more history only when the server refuses to hand out the commit directly.
 */
import { access, rm } from 'node:fs/promises';
import { join } from 'node:path';
import * as git from 'isomorphic-git';
import { GantryError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { translateGitError } from './git-errors.js';
import { checkoutCommit, fetchPinnedCommit, fetchRefShallow, initRepo, type FetchSession, type RepoTarget, type ResolvedRef } from './git-fetch.js';
import { checkoutSubmodules } from './git-submodules.js';
import { createHttpTransport } from './http-client.js';
import { gitCredentials } from './git-credentials.js';
import type { GitSource } from './location.js';

export { redactSecrets } from './git-errors.js';
export { gitCredentials };

export interface GitCheckoutOptions {
  source: GitSource;
  /** Where the working tree is written. */
  dir: string;
  /** Where the repository's objects go; inside `dir` only when the caller keeps the git dir. */
  gitdir: string;
  env?: NodeJS.ProcessEnv;
  /** Kaniko --git branch=: overrides the ref in the URL. */
  branch?: string;
  recurseSubmodules?: boolean;
  insecureSkipTls?: boolean;
  signal?: AbortSignal;
  logger?: Logger;
}

export interface GitCheckoutResult {
  commit: string;
  /** The full ref that was fetched (`refs/heads/main`), or the commit when it was pinned alone. */
  ref: string;
  submodules: number;
}

function resolveRef(refs: git.ServerRef[], wanted: string | undefined, fromBranchFlag: boolean, repo: string): ResolvedRef {
  const byName = new Map(refs.map((r) => [r.ref, r.oid]));
  const candidates = !wanted
    ? ['HEAD']
    : fromBranchFlag
      ? [`refs/heads/${wanted}`, `refs/tags/${wanted}`]
      : wanted.startsWith('refs/')
        ? [wanted]
        : [`refs/heads/${wanted}`, `refs/tags/${wanted}`, wanted];
  for (const name of candidates) {
    const oid = byName.get(name);
    if (oid) return { fullref: name, oid };
  }
  if (!wanted) {
    throw new GantryError('NOT_FOUND', `git repository ${repo} has no HEAD (is it empty?)`, { hint: 'name a branch or tag: <url>#<ref>' });
  }
  const branches = refs.filter((r) => r.ref.startsWith('refs/heads/')).map((r) => r.ref.slice('refs/heads/'.length));
  const shown = branches.slice(0, 10).join(', ') + (branches.length > 10 ? ', …' : '');
  throw new GantryError(
    'NOT_FOUND',
    fromBranchFlag ? `--git branch=${wanted}: no branch or tag named "${wanted}" in ${repo}` : `ref "${wanted}" not found in git repository ${repo}`,
    { hint: branches.length ? `branches: ${shown}` : 'the repository has no branches' },
  );
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

export async function checkoutGitContext(opts: GitCheckoutOptions): Promise<GitCheckoutResult> {
  const env = opts.env ?? process.env;
  const logger = opts.logger ?? silentLogger;
  const { source, signal } = opts;
  const repo = source.url;
  const credentials = gitCredentials(source, env);
  const transport = createHttpTransport({
    ...(credentials ? { credentials, credentialOrigin: new URL(source.url).origin } : {}),
    insecureSkipTls: !!opts.insecureSkipTls,
    ...(signal ? { signal } : {}),
  });
  const session: FetchSession = {
    http: transport.git,
    logger,
    // Servers report progress many times a second; only the summary lines are worth a debug line.
    onMessage: (line: string) => logger.log(/\d+% \(\d+\/\d+\)\s*$/.test(line.trimEnd()) ? 'trace' : 'debug', `git remote: ${line.trimEnd()}`),
    ...(credentials ? { credentials } : {}),
  };
  const target: RepoTarget = { url: repo, dir: opts.dir, gitdir: opts.gitdir, cache: {} };
  const started = Date.now();
  try {
    signal?.throwIfAborted();
    await initRepo(target);

    const wantedRef = opts.branch ?? source.ref;
    let resolved: ResolvedRef | undefined;
    if (wantedRef !== undefined || !source.commit) {
      const refs = await git.listServerRefs({ http: session.http, url: repo, protocolVersion: 1, symrefs: true });
      resolved = resolveRef(refs, wantedRef, opts.branch !== undefined, repo);
    }
    signal?.throwIfAborted();

    let checkoutOid: string;
    if (source.commit) {
      checkoutOid = await fetchPinnedCommit(session, target, source.commit, resolved);
    } else {
      if (!resolved) throw new GantryError('INTERNAL', 'no ref resolved');
      await fetchRefShallow(session, target, resolved);
      checkoutOid = resolved.oid;
    }
    signal?.throwIfAborted();

    const commit = await checkoutCommit(target, checkoutOid);
    let submodules = 0;
    if (await exists(join(opts.dir, '.gitmodules'))) {
      if (opts.recurseSubmodules) {
        submodules = await checkoutSubmodules(session, target, commit, { linkGitDirs: opts.gitdir === join(opts.dir, '.git'), ...(signal ? { signal } : {}) });
      } else {
        logger.log('warn', `${repo} has submodules; they are not checked out (--git recurse-submodules=true fetches them)`);
      }
    }
    logger.log('debug', `git context ${repo} at ${commit} ready in ${Date.now() - started} ms${submodules ? ` with ${submodules} submodule(s)` : ''}`);
    return { commit, ref: resolved?.fullref ?? commit, submodules };
  } catch (err) {
    const e = translateGitError(err, repo, credentials, signal);
    throw e.message.includes(repo) ? e : new GantryError(e.code, `fetching git repository ${repo}: ${e.message}`, { ...e.details }, { cause: e });
  } finally {
    transport.close();
  }
}

/** Drops the repository's objects once the tree is checked out (the build reads only the tree). */
export async function removeGitDir(gitdir: string): Promise<void> {
  await rm(gitdir, { recursive: true, force: true });
}
