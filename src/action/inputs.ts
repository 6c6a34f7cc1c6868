import { GantryError } from '../util/errors.js';
import { parseList } from './list.js';

/**
 * The Action's inputs, named after docker/build-push-action's (plus Kaniko's extras and login
 * inputs), read from the runner's `INPUT_<NAME>` variables as @actions/core reads them.
 */
export interface ActionInputs {
  context: string;
  file: string;
  tags: string[];
  labels: string[];
  annotations: string[];
  buildArgs: string[];
  target: string;
  push: boolean;
  platforms: string[];
  secrets: string[];
  secretFiles: string[];
  secretEnvs: string[];
  cacheFrom: string[];
  cacheTo: string[];
  noCache: boolean;
  outputs: string[];
  provenance: string;
  sbom: string;
  // Kaniko's extras
  cache: boolean;
  cacheRepo: string;
  cacheTtl: string;
  pushRetry: string;
  registryMirrors: string[];
  insecureRegistries: string[];
  registryCertificates: string[];
  sandbox: string;
  network: string;
  addHosts: string[];
  reproducible: boolean;
  // credentials
  registry: string;
  username: string;
  password: string;
  githubToken: string;
  /** build-push-action inputs gantry has no counterpart for yet (see NOT_YET), by name. */
  notYet: Record<string, string>;
}

const RUN_OPTION = 'this RUN option is not implemented yet';

/**
 * build-push-action inputs without a gantry feature behind them. They are declared in action.yml
 * so a migrated workflow that sets one fails with this reason instead of the runner's generic
 * "unexpected input" warning. `pull` is absent on purpose: gantry always resolves base images from
 * the registry, which is what it asks. `no-cache-filters` is not declared either: there is no
 * per-stage cache switch, and the runner warns that it is ignored.
 */
export const NOT_YET: Record<string, { why: string; hint: string }> = {
  load: { why: 'there is no Docker daemon to load the image into', hint: 'use `outputs: type=docker,dest=image.tar` and `docker load -i image.tar` where a daemon exists' },
  attests: { why: 'attestations are not produced yet', hint: 'remove it' },
  'build-contexts': { why: 'named build contexts are not implemented yet', hint: 'copy the files into the context, or use COPY --from=<image>' },
  ssh: { why: `${RUN_OPTION} (RUN --mount=type=ssh has no agent to forward)`, hint: 'remove it; pass a deploy key as a secret (`secrets` / `secret-files`) and read it with RUN --mount=type=secret' },
  allow: { why: `${RUN_OPTION} (no entitlements: RUN never gets extra privileges)`, hint: 'remove it; network: host is available through the `network` input' },
  'shm-size': { why: `${RUN_OPTION} (RUN gets the sandbox's default /dev/shm)`, hint: 'remove it' },
  ulimit: { why: `${RUN_OPTION} (RUN inherits the step's limits)`, hint: 'remove it, or raise the limit with `ulimit` in the RUN command itself' },
  'cgroup-parent': { why: `${RUN_OPTION} (RUN runs in the step's cgroup)`, hint: 'remove it' },
  builder: { why: 'gantry builds in the step itself; there is no builder instance to choose', hint: 'remove it (and docker/setup-buildx-action)' },
  call: { why: 'build checks through the Action are not implemented yet', hint: 'run `gantry build --call=check` in a run step' },
};

/** `INPUT_<NAME>`: upper-cased, spaces become `_`, dashes stay (the runner's rule). */
export function inputEnvName(name: string): string {
  return `INPUT_${name.replace(/ /g, '_').toUpperCase()}`;
}

export function getInput(env: NodeJS.ProcessEnv, name: string): string {
  return (env[inputEnvName(name)] ?? '').trim();
}

const TRUE = new Set(['true', 'True', 'TRUE']);
const FALSE = new Set(['false', 'False', 'FALSE']);

/** YAML 1.2 core booleans, as core.getBooleanInput accepts them; empty means the default. */
export function getBoolean(env: NodeJS.ProcessEnv, name: string, fallback: boolean): boolean {
  const v = getInput(env, name);
  if (v === '') return fallback;
  if (TRUE.has(v)) return true;
  if (FALSE.has(v)) return false;
  throw new GantryError('INVALID_ARGUMENT', `input "${name}" must be true or false, got "${v}"`, {
    hint: 'use one of true, True, TRUE, false, False, FALSE',
  });
}

export function readInputs(env: NodeJS.ProcessEnv): ActionInputs {
  const s = (name: string) => getInput(env, name);
  const list = (name: string, ignoreComma = false) => parseList(s(name), { ignoreComma });
  return {
    context: s('context'),
    file: s('file'),
    tags: list('tags'),
    labels: list('labels', true),
    annotations: list('annotations', true),
    buildArgs: list('build-args', true),
    target: s('target'),
    push: getBoolean(env, 'push', false),
    platforms: list('platforms'),
    secrets: list('secrets', true),
    secretFiles: list('secret-files', true),
    secretEnvs: list('secret-envs'),
    cacheFrom: list('cache-from', true),
    cacheTo: list('cache-to', true),
    noCache: getBoolean(env, 'no-cache', false),
    outputs: parseList(s('outputs'), { ignoreComma: true, noQuotes: true }),
    provenance: s('provenance'),
    sbom: s('sbom'),
    cache: getBoolean(env, 'cache', false),
    cacheRepo: s('cache-repo'),
    cacheTtl: s('cache-ttl'),
    pushRetry: s('push-retry'),
    registryMirrors: list('registry-mirror'),
    insecureRegistries: list('insecure-registry'),
    registryCertificates: list('registry-certificate'),
    sandbox: s('sandbox'),
    network: s('network'),
    addHosts: list('add-hosts'),
    reproducible: getBoolean(env, 'reproducible', false),
    registry: s('registry'),
    username: s('username'),
    password: s('password'),
    githubToken: s('github-token'),
    notYet: Object.fromEntries(Object.keys(NOT_YET).map((name) => [name, s(name)])),
  };
}

function unsupported(input: string, why: string, hint: string): GantryError {
  return new GantryError('UNSUPPORTED', `input "${input}" is not supported by this version of gantry: ${why}`, { hint, input });
}

/**
 * Inputs whose feature gantry does not have yet fail the step before any work: a silently
 * ignored `secrets` or `cache-to` would make a build look right and behave wrong.
 */
export function rejectUnsupported(inputs: ActionInputs): void {
  for (const [input, specs] of [['cache-from', inputs.cacheFrom], ['cache-to', inputs.cacheTo]] as const) {
    for (const spec of specs) {
      if (/(^|,)\s*type\s*=\s*gha\s*(,|$)/i.test(spec)) {
        throw unsupported(input, `"${spec}": GitHub's cache service (type=gha) is not supported`, 'use type=registry,ref=ghcr.io/<owner>/<image>/cache (or type=local,src|dest=DIR with actions/cache)');
      }
    }
  }
  if (inputs.annotations.length > 0) {
    throw unsupported('annotations', 'manifest annotations are not written yet', 'use `labels` (GHCR reads org.opencontainers.image.* labels from the image config too)');
  }
  if (inputs.provenance !== '' && !FALSE.has(inputs.provenance)) {
    throw unsupported('provenance', 'provenance attestations are not produced yet', 'remove it or set it to false');
  }
  if (inputs.sbom !== '' && !FALSE.has(inputs.sbom)) throw unsupported('sbom', 'SBOM attestations are not produced yet', 'remove it or set it to false');
  if (inputs.platforms.length > 1) {
    throw unsupported('platforms', `one platform per build for now, got ${inputs.platforms.length} (${inputs.platforms.join(', ')})`, 'run one job per platform (a matrix); multi-platform images are not assembled yet');
  }
  for (const [name, value] of Object.entries(inputs.notYet)) {
    // A boolean input left at false asks for nothing.
    if (value !== '' && !FALSE.has(value)) throw unsupported(name, NOT_YET[name]!.why, NOT_YET[name]!.hint);
  }
}
