/**
 * Classifies a build-context location string the way Kaniko's `--context` and `docker buildx
 * build` do, without touching the network. Kaniko's schemes (`dir://`, `tar://`, `git://…#ref#sha`)
 * come first; BuildKit's git URL forms (`https://…/repo.git#ref:subdir`, `github.com/owner/repo`)
 * are accepted too, so a workflow can move between the two without rewriting its context.
 */
import { GantryError } from '../util/errors.js';

export interface GitCredentials {
  username: string;
  password: string;
}

export interface GitSource {
  /** The repository URL to clone, never carrying credentials. */
  url: string;
  /** Branch, tag or full ref name; absent means the remote HEAD. */
  ref?: string;
  /** A commit to check out (full or abbreviated hex). */
  commit?: string;
  /** BuildKit's `#ref:subdir`: the directory inside the repository to use as the context. */
  subdir?: string;
  /** Userinfo that was embedded in the URL (it is removed from `url`). */
  urlCredentials?: GitCredentials;
}

export type ContextLocation =
  | { kind: 'dir'; path: string }
  | { kind: 'tar'; path: string }
  | { kind: 'stdin' }
  | { kind: 'git'; git: GitSource; form: 'kaniko' | 'buildkit' }
  | { kind: 'url'; url: string }
  /** `github.com/owner/repo`: a git context unless a local directory of that name exists. */
  | { kind: 'dir-or-git'; path: string; git: GitSource };

const FULL_SHA = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

export function isFullCommit(s: string): boolean {
  return FULL_SHA.test(s);
}

function invalid(location: string, why: string, hint?: string): GantryError {
  return new GantryError('CONTEXT_INVALID', `build context "${redactLocation(location)}": ${why}`, hint ? { hint } : {});
}

function unsupported(location: string, why: string, hint: string): GantryError {
  return new GantryError('UNSUPPORTED', `build context "${redactLocation(location)}": ${why}`, { hint });
}

/** Removes userinfo from anything URL-shaped so a location can be shown in messages and logs. */
export function redactLocation(location: string): string {
  return location.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@#?]*@/i, '$1***@');
}

/**
 * Kaniko: `git://host/owner/repo#<ref>#<commit>` cloned over `GIT_PULL_METHOD` (https unless it
 * says http). A second part containing `:` is BuildKit's `ref:subdir` (git ref names cannot hold
 * a colon, so the two readings never collide).
 */
function parseKanikoGit(location: string, env: NodeJS.ProcessEnv): GitSource {
  const rest = location.slice('git://'.length);
  const parts = rest.split('#');
  if (parts.length > 3) {
    throw invalid(location, 'expected git://host/repository[#ref[#commit]]', 'a git context has at most two "#" parts: the ref and the commit');
  }
  const method = env.GIT_PULL_METHOD === 'http' ? 'http' : 'https';
  const { url, credentials } = splitCredentials(location, `${method}://${parts[0]}`);
  const source: GitSource = { url };
  if (credentials) source.urlCredentials = credentials;
  const [, ref, commit] = parts;
  if (parts.length === 2 && ref !== undefined && ref.includes(':')) {
    Object.assign(source, refAndSubdir(ref));
  } else {
    if (ref) source.ref = ref;
    if (commit) {
      if (!/^[0-9a-f]{4,64}$/.test(commit)) throw invalid(location, `"${commit}" is not a commit hash`, 'the third part of a git:// context is a commit SHA');
      source.commit = commit;
    }
  }
  if (source.ref && isFullCommit(source.ref) && !source.commit) {
    source.commit = source.ref;
    delete source.ref;
  }
  return source;
}

function refAndSubdir(fragment: string): Pick<GitSource, 'ref' | 'subdir'> {
  const colon = fragment.indexOf(':');
  const ref = colon < 0 ? fragment : fragment.slice(0, colon);
  const subdir = colon < 0 ? '' : fragment.slice(colon + 1);
  const out: Pick<GitSource, 'ref' | 'subdir'> = {};
  if (ref) out.ref = ref;
  if (subdir && subdir !== '/' && subdir !== '.') out.subdir = subdir;
  return out;
}

/** BuildKit: `<url>#<ref>:<subdir>`, either part optional; a full SHA as ref pins the commit. */
function parseBuildkitGit(location: string, withScheme: string): GitSource {
  const hash = withScheme.indexOf('#');
  const base = hash < 0 ? withScheme : withScheme.slice(0, hash);
  const fragment = hash < 0 ? '' : withScheme.slice(hash + 1);
  const { url, credentials } = splitCredentials(location, base);
  const source: GitSource = { url, ...refAndSubdir(fragment) };
  if (credentials) source.urlCredentials = credentials;
  if (source.ref && isFullCommit(source.ref)) {
    source.commit = source.ref;
    delete source.ref;
  }
  return source;
}

function splitCredentials(location: string, raw: string): { url: string; credentials?: GitCredentials } {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw invalid(location, 'not a valid URL');
  }
  if (!u.hostname) throw invalid(location, 'the URL has no host');
  if (!u.username && !u.password) return { url: u.toString() };
  const credentials = { username: decodeURIComponent(u.username), password: decodeURIComponent(u.password) };
  u.username = '';
  u.password = '';
  return { url: u.toString(), credentials };
}

/** docker CLI's rule: an http(s) URL is a git repository when its path ends in `.git`. */
function isGitHttpUrl(location: string): boolean {
  const noFragment = location.split('#')[0] ?? '';
  const path = noFragment.split('?')[0] ?? '';
  return /\.git\/?$/.test(path);
}

export function parseContextLocation(location: string, env: NodeJS.ProcessEnv = process.env): ContextLocation {
  if (location === '') {
    throw new GantryError('INVALID_ARGUMENT', 'the build context location is empty', { hint: 'pass a directory, tar://file.tar.gz, tar://stdin or a git URL' });
  }
  const lower = location.toLowerCase();
  if (lower.startsWith('dir://')) {
    const path = location.slice('dir://'.length);
    if (!path) throw invalid(location, 'dir:// needs a path');
    return { kind: 'dir', path };
  }
  if (lower.startsWith('tar://')) {
    const path = location.slice('tar://'.length);
    if (path === 'stdin') return { kind: 'stdin' };
    if (!path) throw invalid(location, 'tar:// needs a file path or "stdin"');
    return { kind: 'tar', path };
  }
  if (location === '-') return { kind: 'stdin' };
  if (lower.startsWith('git://')) return { kind: 'git', git: parseKanikoGit(location, env), form: 'kaniko' };
  if (lower.startsWith('gs://') || lower.startsWith('s3://')) {
    throw unsupported(location, `${lower.slice(0, 2)}:// contexts (cloud storage buckets) are not supported`, 'download the tarball first and pass tar://<file>, or use a git or directory context');
  }
  if (lower.startsWith('git@') || lower.startsWith('ssh://')) {
    throw unsupported(location, 'git over SSH is not supported (there is no SSH client in the builder)', 'use the https:// URL of the repository with GIT_TOKEN or GIT_USERNAME/GIT_PASSWORD');
  }
  if (lower.startsWith('http://') || lower.startsWith('https://')) {
    if (isGitHttpUrl(location)) return { kind: 'git', git: parseBuildkitGit(location, location), form: 'buildkit' };
    let host = '';
    try {
      host = new URL(location).hostname;
    } catch {
      throw invalid(location, 'not a valid URL');
    }
    if (host.endsWith('.blob.core.windows.net')) {
      throw unsupported(location, 'Azure Blob Storage contexts are not supported', 'download the tarball first and pass tar://<file>');
    }
    return { kind: 'url', url: location };
  }
  if (lower.startsWith('github.com/')) {
    return { kind: 'dir-or-git', path: location, git: parseBuildkitGit(location, `https://${location}`) };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location)) {
    const scheme = location.slice(0, location.indexOf(':'));
    throw unsupported(location, `unknown context scheme "${scheme}://"`, 'supported: a directory, dir://, tar://<file>, tar://stdin, git://, http(s)://…/repo.git, http(s)://…/context.tar.gz');
  }
  return { kind: 'dir', path: location };
}
