/**
 * src/context: build-context sources (directory, tarball, stdin, git, tarball URL) and the
 * .dockerignore-aware walk over a context directory.
 */
export { openContext, type ContextOptions, type OpenedContext } from './open.js';
export { parseContextLocation, redactLocation, isFullCommit, type ContextLocation, type GitSource, type GitCredentials } from './location.js';
export { parseGitOptions, DEFAULT_GIT_OPTIONS, type GitCloneOptions } from './git-options.js';
export { gitCredentials } from './git-credentials.js';
export { resolveSubPath } from './sub-path.js';
export { extractContextTar, safeEntryPath, type ExtractOptions, type ExtractStats } from './tar-extract.js';
export { walkContext, type WalkEntry, type WalkEntryType, type WalkMatcher, type WalkOptions } from './walk.js';
