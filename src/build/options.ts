import type { RegistryOptions } from '../registry/options.js';
import type { Logger } from '../util/logger.js';
import type { SandboxKind } from '../run/index.js';

/**
 * What a build needs, independent of where it was asked for: `gantry executor` (Kaniko flags),
 * `gantry build` (docker buildx flags), the GitHub Action and the library all map to this.
 */
export interface BuildOptions {
  /**
   * Build context location: a directory path, `dir://path`, `tar://file.tar[.gz]`, `tar://stdin`,
   * `git://host/repo#ref#sha`, `https://host/repo.git#ref:subdir`.
   */
  context: string;
  /** Sub-directory of the context to use as its root (`--context-sub-path`). */
  contextSubPath?: string;
  /** Dockerfile path: tried as given (relative to cwd), then relative to the context. Default `Dockerfile`. */
  dockerfile?: string;
  /** Stage to build; default the last. */
  target?: string;
  /** `KEY=VALUE` given as { KEY: VALUE }; `KEY` alone (undefined) takes the value from `env`. */
  buildArgs?: Record<string, string | undefined>;
  /** Labels merged into the final image config. */
  labels?: Record<string, string>;
  /** Target platform `os/arch[/variant]`; default the host's. Selects base images from indexes. */
  platform?: string;
  /** Build only the stages the target depends on (BuildKit's default; Kaniko's `--skip-unused-stages`). */
  skipUnusedStages?: boolean;

  /** Image references to push to. */
  destinations?: string[];
  /** Do not push even if destinations are given (Kaniko `--no-push`). */
  noPush?: boolean;
  /** docker-archive tarball to write (`--tar-path`); tagged with every destination. */
  tarPath?: string;
  /** OCI image layout directory to write (`--oci-layout-path`). */
  ociLayoutPath?: string;
  /** Files written after the image exists (Kaniko semantics). */
  digestFile?: string;
  imageNameWithDigestFile?: string;
  imageNameTagWithDigestFile?: string;
  /** Retries of the whole push with exponential backoff starting at 1 s. */
  pushRetry?: number;
  /** Skip the push-permission probe done before building. */
  skipPushPermissionCheck?: boolean;
  /**
   * OCI layout written when nothing was pushed and no tarPath/ociLayoutPath was given, so a build
   * always leaves its image somewhere. Default `./gantry-out` (relative to the process cwd);
   * `false` writes nothing. Tagged with the destinations' tags, or `latest`.
   */
  defaultOutputDir?: string | false;
  /** First delay of the push retry backoff in ms (default 1000, doubling); tests shorten it. */
  pushBackoffMs?: number;

  /** Clamp timestamps to 0 (or SOURCE_DATE_EPOCH) so rebuilds are byte-identical. */
  reproducible?: boolean;
  /** Layer compression for new layers; default gzip. */
  compression?: 'gzip' | 'zstd';
  compressionLevel?: number;

  registry?: RegistryOptions;

  /**
   * How RUN is isolated: `auto` (default) picks the first backend that works here and logs why;
   * `ns` needs root with CAP_SYS_ADMIN. A sandbox is only set up when the build has a RUN.
   */
  sandbox?: 'auto' | SandboxKind;
  /** Secrets for `RUN --mount=type=secret,id=ID`: a host file (`src`) or an environment variable (`env`, read from `env`). */
  secrets?: Record<string, { src?: string; env?: string }>;
  /** Network of RUN steps without `--network` (`docker buildx build --network`); default `default` (the host's). */
  network?: 'default' | 'none' | 'host';
  /** Extra `/etc/hosts` entries for RUN (`--add-host host:ip`). */
  addHosts?: Array<{ host: string; ip: string }>;
  /**
   * The inplace sandbox (Kaniko's model, chosen in unprivileged pods): `root` the image is built
   * in (default `/`), extra paths never unpacked over, wiped or snapshotted (`--ignore-path`),
   * `--ignore-var-run`, the walk's `--snapshot-mode`, and `--force` (build in place outside a
   * detected container).
   */
  inplace?: { root?: string; ignorePaths?: string[]; ignoreVarRun?: boolean; snapshotMode?: 'full' | 'redo' | 'time'; force?: boolean };
  /**
   * The layer cache (Kaniko's --cache): RUN layers (and COPY/ADD ones with `copyLayers`) are
   * looked up by a key of their inputs and reused without running the step. `repo` is Kaniko's
   * --cache-repo (`registry/repo` or `oci:/dir`; default `<first destination repo>/cache`), `ttl`
   * a Go duration (default 336h), `noPush` reads without writing. `from`/`to` are BuildKit-style
   * specs (`type=registry,ref=…`, `type=local,src=…|dest=…`) that replace the repo: entries are
   * read from every `from` (then `to`) and written to the first `to`. `noLookup` stores without
   * reading (`gantry build --no-cache --cache-to ...`).
   */
  cache?: { enabled: boolean; repo?: string; ttl?: string; copyLayers?: boolean; runLayers?: boolean; noPush?: boolean; from?: string[]; to?: string[]; noLookup?: boolean };
  /**
   * Kaniko's base-image cache (`--cache-dir`, filled by `gantry warmer`): base images found there
   * are read from disk instead of the registry. A tag is still resolved by the registry first
   * (Kaniko's rule); entries older than `ttl` (Go duration, default 336h) are ignored.
   */
  baseImageCache?: { dir: string; ttl?: string };
  /** Where `RUN --mount=type=cache` directories persist between builds; default `~/.cache/gantry/run-cache`. */
  cacheDir?: string;
  /** Environment for bare build args, SOURCE_DATE_EPOCH, GIT_* credentials, BUILDER_OUTPUT. Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Working directory for temp files (layers, contexts). Default os.tmpdir(). */
  workDir?: string;
  logger?: Logger;
  signal?: AbortSignal;
}

export interface BuildResult {
  /** Digest of the image manifest. */
  digest: string;
  /** Digest of the image config (Docker's "image ID"). */
  imageId: string;
  manifestMediaType: string;
  /** Every reference the image was pushed to, with its digest. */
  pushed: Array<{ reference: string; digest: string }>;
  /** Local outputs written. */
  outputs: Array<{ kind: 'oci-layout' | 'docker-archive'; path: string }>;
  /** One entry per executed instruction. */
  steps: Array<{ stage: string; instruction: string; cached: boolean; ms: number; layer?: string }>;
}
