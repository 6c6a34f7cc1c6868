/**
 * openContext: turns a context location (directory, tarball, stdin, git URL, tarball URL) into
 * a directory on disk to build from. Local directories are used in place; everything else is
 * materialised under a fresh temporary directory that `cleanup()` removes.
 */
import { createReadStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { GantryError, isGantryError, wrapError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { parseGitOptions } from './git-options.js';
import { parseContextLocation, redactLocation, type GitSource } from './location.js';
import { resolveSubPath } from './sub-path.js';
import { extractContextTar } from './tar-extract.js';

export interface ContextOptions {
  /** Kaniko --context-sub-path: a directory inside the context to use as its root. */
  subPath?: string;
  env?: NodeJS.ProcessEnv;
  /** Where remote contexts are materialised; default os.tmpdir(). */
  workDir?: string;
  /** Kaniko --git: "branch=x,single-branch=true,recurse-submodules=false,insecure-skip-tls=false" (repeatable). */
  git?: string | readonly string[];
  /** Keep `.git` in a git context (BuildKit's BUILDKIT_CONTEXT_KEEP_GIT_DIR); default false. */
  keepGitDir?: boolean;
  /** Read by tar://stdin and `-`; default process.stdin. */
  stdin?: Readable;
  signal?: AbortSignal;
  logger?: Logger;
}

export interface OpenedContext {
  /** The root to build from, after subPath. */
  dir: string;
  /** Names the context in messages (credentials removed). */
  source: string;
  cleanup(): Promise<void>;
  /** The commit checked out, for git contexts. */
  gitCommit?: string;
  /** Extracted or cloned into a fresh directory for this build (nothing about it outlives the build). */
  temporary?: boolean;
}

const noCleanup = async () => undefined;

/** rm -rf that also copes with read-only directories an archive created (non-root users). */
async function removeTree(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true, maxRetries: 2 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EACCES' && (err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
    await makeWritable(path);
    await rm(path, { recursive: true, force: true, maxRetries: 2 });
  }
}

async function makeWritable(dir: string): Promise<void> {
  await chmod(dir, 0o700).catch(() => undefined);
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) if (e.isDirectory()) await makeWritable(join(dir, e.name));
}

async function scratch(opts: ContextOptions): Promise<string> {
  const base = opts.workDir ?? tmpdir();
  await mkdir(base, { recursive: true });
  return mkdtemp(join(base, 'gantry-context-'));
}

async function localDir(path: string, source: string): Promise<string> {
  const abs = resolve(path);
  let st;
  try {
    st = await stat(abs);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new GantryError('CONTEXT_INVALID', `build context directory ${source} does not exist`, { hint: 'check the path (it is relative to the current directory)' });
    }
    throw wrapError(err, `opening build context ${source}`, 'CONTEXT_INVALID');
  }
  if (!st.isDirectory()) {
    throw new GantryError('CONTEXT_INVALID', `build context ${source} is not a directory`, {
      hint: /\.(tar|tgz|tar\.\w+)$/.test(path) ? `for a tarball use tar://${path}` : 'pass a directory, tar://<file>, tar://stdin or a git URL',
    });
  }
  return abs;
}

function gitSourceName(git: GitSource): string {
  const fragment = [git.ref, git.commit].filter(Boolean).join('#');
  return redactLocation(git.url) + (fragment ? `#${fragment}` : '') + (git.subdir ? `:${git.subdir}` : '');
}

/** Materialises into a temp dir, removing it again if anything fails. */
async function materialise(
  opts: ContextOptions,
  source: string,
  fill: (root: string) => Promise<{ dir: string; gitCommit?: string }>,
): Promise<OpenedContext> {
  const root = await scratch(opts);
  try {
    const { dir, gitCommit } = await fill(root);
    const finalDir = opts.subPath ? await resolveSubPath(dir, opts.subPath, source) : dir;
    const out: OpenedContext = { dir: finalDir, source, cleanup: () => removeTree(root), temporary: true };
    if (gitCommit) out.gitCommit = gitCommit;
    return out;
  } catch (err) {
    await removeTree(root).catch(() => undefined);
    throw err;
  }
}

async function extractInto(root: string, input: Readable, source: string, opts: ContextOptions): Promise<string> {
  const dir = join(root, 'context');
  await mkdir(dir);
  const logger = opts.logger ?? silentLogger;
  const started = Date.now();
  const stats = await extractContextTar(input, dir, { source, ...(opts.signal ? { signal: opts.signal } : {}), logger });
  logger.log('debug', `extracted ${stats.entries} entries (${stats.bytes} bytes) from ${source} in ${Date.now() - started} ms`);
  return dir;
}

export async function openContext(location: string, opts: ContextOptions = {}): Promise<OpenedContext> {
  try {
    return await open(location, opts);
  } catch (err) {
    if (opts.signal?.aborted && !isGantryError(err, 'ABORTED')) {
      throw new GantryError('ABORTED', `opening build context ${redactLocation(location)}: aborted`, {}, { cause: err });
    }
    throw err;
  }
}

async function open(location: string, opts: ContextOptions): Promise<OpenedContext> {
  const env = opts.env ?? process.env;
  const logger = opts.logger ?? silentLogger;
  opts.signal?.throwIfAborted();
  let loc = parseContextLocation(location, env);
  if (loc.kind === 'dir-or-git') {
    const isDir = await stat(loc.path).then((s) => s.isDirectory(), () => false);
    loc = isDir ? { kind: 'dir', path: loc.path } : { kind: 'git', git: loc.git, form: 'buildkit' };
  }
  switch (loc.kind) {
    case 'dir': {
      const source = resolve(loc.path);
      const root = await localDir(loc.path, source);
      const dir = opts.subPath ? await resolveSubPath(root, opts.subPath, source) : root;
      return { dir, source, cleanup: noCleanup };
    }
    case 'tar': {
      const source = `tar://${loc.path}`;
      const file = resolve(loc.path);
      const st = await stat(file).catch((err: NodeJS.ErrnoException) => {
        throw new GantryError('CONTEXT_INVALID', `build context archive ${loc.path} ${err.code === 'ENOENT' ? 'does not exist' : `cannot be read (${err.code})`}`);
      });
      if (!st.isFile()) throw new GantryError('CONTEXT_INVALID', `build context archive ${loc.path} is not a file`);
      return materialise(opts, source, async (root) => ({ dir: await extractInto(root, createReadStream(file), source, opts) }));
    }
    case 'stdin': {
      const source = 'tar://stdin';
      const input = opts.stdin ?? process.stdin;
      return materialise(opts, source, async (root) => ({ dir: await extractInto(root, input, source, opts) }));
    }
    case 'url': {
      const source = redactLocation(loc.url);
      const url = loc.url;
      return materialise(opts, source, async (root) => {
        const { createHttpTransport } = await import('./http-client.js');
        const transport = createHttpTransport(opts.signal ? { signal: opts.signal } : {});
        try {
          logger.log('info', `downloading build context ${source}`);
          const { res } = await transport.request('GET', url);
          if (res.statusCode !== 200) {
            res.resume();
            throw new GantryError(res.statusCode === 404 ? 'NOT_FOUND' : 'IO', `downloading build context ${source}: HTTP ${res.statusCode} ${res.statusMessage ?? ''}`.trimEnd(), {
              hint: 'a URL context must be a (compressed) tar archive; git repositories need a URL ending in .git',
              status: res.statusCode,
            });
          }
          return { dir: await extractInto(root, res, source, opts) };
        } finally {
          transport.close();
        }
      });
    }
    case 'git': {
      const git = loc.git;
      const source = gitSourceName(git);
      const gitOpts = parseGitOptions(opts.git);
      return materialise(opts, source, async (root) => {
        // isomorphic-git is loaded for git contexts only: ~10 ms of every other CLI run.
        const { checkoutGitContext, removeGitDir } = await import('./git-clone.js');
        const dir = join(root, 'context');
        const gitdir = opts.keepGitDir ? join(dir, '.git') : join(root, 'git');
        const { commit } = await checkoutGitContext({
          source: git,
          dir,
          gitdir,
          env,
          ...(gitOpts.branch !== undefined ? { branch: gitOpts.branch } : {}),
          recurseSubmodules: gitOpts.recurseSubmodules,
          insecureSkipTls: gitOpts.insecureSkipTls,
          ...(opts.signal ? { signal: opts.signal } : {}),
          logger,
        });
        if (!opts.keepGitDir) await removeGitDir(gitdir);
        const sub = git.subdir ? await resolveSubPath(dir, git.subdir, source, 'git subdirectory') : dir;
        return { dir: sub, gitCommit: commit };
      });
    }
  }
}
