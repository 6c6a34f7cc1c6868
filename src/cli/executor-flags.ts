import type { FlagSpec } from './flags.js';
import { registryFlags } from './registry-flags.js';
import { runFlags } from './run-flags.js';

/**
 * Every flag of Kaniko's `executor` (v1.24.0, cmd/executor/cmd/root.go: 60 registrations incl.
 * deprecated spellings, which appear here as aliases), with Kaniko's names, shorthands, env vars
 * and defaults, so recipes run unchanged. A flag whose feature gantry does not have yet carries
 * `unsupported` and fails loudly when used.
 */
const SNAPSHOT = 'RUN layers are always the exact overlay diff; this snapshot option is not implemented';
const REMOTE_CTX = 'use a directory, tar:// or git:// context';

export const executorFlags: FlagSpec[] = [
  // build
  { name: 'dockerfile', short: 'f', kind: 'string', default: 'Dockerfile', valueName: 'path', help: 'Dockerfile to build: a path (tried as given, then inside the context)' },
  { name: 'target', kind: 'string', valueName: 'stage', help: 'stage to build (default: the last stage)' },
  { name: 'build-arg', kind: 'list', valueName: 'KEY[=VALUE]', help: 'build argument; a bare KEY takes its value from the environment' },
  { name: 'label', kind: 'list', valueName: 'key=value', help: 'label added to the image config' },
  { name: 'skip-unused-stages', kind: 'bool', help: 'build only the stages the target needs' },
  { name: 'custom-platform', aliases: ['customPlatform'], kind: 'string', valueName: 'os/arch[/variant]', help: 'platform of the image (selects base images; no emulation)' },
  { name: 'reproducible', kind: 'bool', help: 'strip timestamps so rebuilds give the same digest' },
  { name: 'cleanup', kind: 'bool', help: 'remove the build filesystem when done (gantry always does)' },
  { name: 'force', kind: 'bool', help: 'allow the inplace sandbox outside a detected container (it writes to /)' },
  { name: 'force-build-metadata', kind: 'bool', help: 'write layers and history for metadata-only instructions too' },
  // context
  { name: 'context', short: 'c', kind: 'string', default: '/workspace/', valueName: 'location', help: 'build context: dir, dir://, tar://file.tar.gz, tar://stdin, git://host/repo#ref#sha' },
  { name: 'context-sub-path', kind: 'string', valueName: 'path', help: 'sub-directory of the context to use as its root' },
  { name: 'git', kind: 'string', valueName: 'options', default: 'branch=,single-branch=false,recurse-submodules=false,insecure-skip-tls=false', help: 'git clone options for git contexts' },
  { name: 'bucket', short: 'b', kind: 'string', hidden: true, help: 'legacy GCS bucket context', unsupported: `Google Cloud Storage contexts are not supported; ${REMOTE_CTX}` },
  // outputs
  { name: 'destination', short: 'd', kind: 'list', valueName: 'image', help: 'image reference to push to' },
  { name: 'no-push', kind: 'bool', env: 'KANIKO_NO_PUSH', help: 'build without pushing' },
  { name: 'tar-path', aliases: ['tarPath'], kind: 'string', valueName: 'file', help: 'also write a docker-archive (docker save) tarball' },
  { name: 'oci-layout-path', kind: 'string', valueName: 'dir', help: 'also write an OCI image layout directory' },
  { name: 'digest-file', kind: 'string', valueName: 'file', help: 'write the image digest to this file' },
  { name: 'image-name-with-digest-file', kind: 'string', valueName: 'file', help: 'write repo@digest lines for every destination' },
  { name: 'image-name-tag-with-digest-file', kind: 'string', valueName: 'file', help: 'write repo:tag@digest lines for every destination' },
  { name: 'push-retry', kind: 'string', default: '0', valueName: 'n', help: 'retry a failed push n times with exponential backoff' },
  { name: 'push-ignore-immutable-tag-errors', kind: 'bool', help: 'treat "tag is immutable" push errors as success' },
  { name: 'skip-push-permission-check', kind: 'bool', help: 'do not check push access before building' },
  { name: 'compression', kind: 'string', valueName: 'gzip|zstd', help: 'compression of new layers (default gzip)' },
  { name: 'compression-level', kind: 'string', default: '-1', valueName: 'n', help: 'compression level of new layers' },
  // cache
  { name: 'cache', kind: 'bool', help: 'reuse RUN (and with --cache-copy-layers COPY/ADD) layers from the cache repository' },
  { name: 'cache-repo', kind: 'string', valueName: 'repo', help: 'registry repository (or oci:/path) holding cached layers (default <destination repo>/cache)' },
  { name: 'cache-dir', kind: 'string', default: '/cache', valueName: 'dir', help: 'base-image cache filled by `gantry warmer` (/kaniko/warmer): base images found there are not downloaded; read with --cache or when given' },
  { name: 'cache-ttl', kind: 'string', default: '336h', valueName: 'duration', help: 'maximum age of a cached layer' },
  { name: 'cache-copy-layers', kind: 'bool', help: 'cache COPY/ADD layers too (keyed by the content of the files copied)' },
  { name: 'cache-run-layers', kind: 'bool', default: true, help: 'cache RUN layers' },
  { name: 'compressed-caching', kind: 'bool', default: true, help: 'keep compressed layers to avoid recompression (gantry never recompresses; =false is refused)' },
  { name: 'no-push-cache', kind: 'bool', help: 'read the layer cache without writing new layers to it' },
  // registry
  ...registryFlags,
  { name: 'image-download-retry', kind: 'string', default: '0', valueName: 'n', help: 'retries for base image manifest downloads' },
  { name: 'azure-container-registry-config', kind: 'string', hidden: true, help: 'Azure credential file', unsupported: 'use a docker config.json or credential helper for Azure Container Registry' },
  // snapshot / filesystem
  { name: 'snapshot-mode', aliases: ['snapshotMode'], kind: 'string', default: 'full', valueName: 'full|redo|time', help: 'how the inplace sandbox detects RUN changes (ns/rootless take the exact overlay diff)' },
  { name: 'single-snapshot', kind: 'bool', help: 'one layer for the whole stage', unsupported: SNAPSHOT },
  { name: 'use-new-run', kind: 'bool', help: 'Kaniko experimental RUN (accepted; gantry RUN always works this way)' },
  { name: 'ignore-var-run', aliases: ['whitelist-var-run'], kind: 'bool', default: true, help: 'keep /var/run out of inplace snapshots (ns/rootless never capture RUN mount points)' },
  { name: 'ignore-path', kind: 'list', valueName: 'path', help: 'path kept out of RUN layers and (inplace) out of extraction' },
  { name: 'image-fs-extract-retry', kind: 'string', default: '0', valueName: 'n', help: 'retries for base image extraction' },
  { name: 'kaniko-dir', kind: 'string', env: 'KANIKO_DIR', default: '/kaniko', valueName: 'dir', help: 'working directory of the executor' },
  // RUN (gantry extensions)
  ...runFlags,
  // logging
  { name: 'verbosity', short: 'v', kind: 'string', default: 'info', valueName: 'level', help: 'trace, debug, info, warn, error, fatal, panic' },
  { name: 'log-format', kind: 'string', default: 'color', valueName: 'text|color|json', help: 'log format' },
  { name: 'log-timestamp', kind: 'bool', help: 'timestamps in text logs' },
];
