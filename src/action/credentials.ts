import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { GantryError } from '../util/errors.js';

/**
 * Registry credentials for the step, in docker's config.json form so the build reads them like
 * any other client: an existing config (docker/login-action writes `$DOCKER_CONFIG/config.json`,
 * default `~/.docker`) is used as it is; `username`/`password` inputs, or the workflow's
 * GITHUB_TOKEN for ghcr.io, are merged into a copy in a private temp directory, which the step
 * removes when it ends. The user's own file is never modified.
 */
export interface CredentialInputs {
  /** Registry the username/password are for; default the registry of the first pushed tag. */
  registry: string;
  username: string;
  password: string;
  /** `github-token` input, else GITHUB_TOKEN from the environment. */
  githubToken: string;
  actor: string;
  /** Registries the build pushes to. */
  pushRegistries: string[];
  env: NodeJS.ProcessEnv;
  tempRoot: string;
}

export interface PreparedCredentials {
  /** Directory holding the merged config.json; undefined = the existing config as is. */
  dockerConfigDir: string | undefined;
  /** What was done, one line per registry, for the log (no secrets). */
  notes: string[];
  /** Strings the runner must mask in logs. */
  secrets: string[];
  cleanup(): Promise<void>;
}

type ConfigJson = Record<string, unknown> & { auths?: Record<string, Record<string, unknown>>; credHelpers?: Record<string, string>; credsStore?: string };

const DOCKER_HUB_KEY = 'https://index.docker.io/v1/';

export function configDir(env: NodeJS.ProcessEnv): string {
  return env.DOCKER_CONFIG || join(env.HOME || homedir(), '.docker');
}

/** The key docker login writes: Docker Hub keeps its legacy URL, other registries their host. */
export function configKey(registry: string): string {
  const r = registry.toLowerCase();
  return r === 'docker.io' || r === 'index.docker.io' || r === 'registry-1.docker.io' ? DOCKER_HUB_KEY : r;
}

function hostOfKey(key: string): string {
  let host = key.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '');
  const slash = host.indexOf('/');
  if (slash >= 0) host = host.slice(0, slash);
  host = host.toLowerCase();
  return host === 'index.docker.io' || host === 'registry-1.docker.io' ? 'docker.io' : host;
}

function hasEntryFor(map: Record<string, unknown> | undefined, registry: string): boolean {
  const want = hostOfKey(configKey(registry));
  return Object.keys(map ?? {}).some((k) => hostOfKey(k) === want);
}

async function readConfig(dir: string): Promise<ConfigJson | undefined> {
  const path = join(dir, 'config.json');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new GantryError('CREDENTIALS', `reading docker config ${path}: ${(err as Error).message}`);
  }
  try {
    const parsed = JSON.parse(text) as unknown;
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as ConfigJson;
  } catch {
    // reported below
  }
  throw new GantryError('CREDENTIALS', `docker config ${path} is not a JSON object`, { hint: 'fix the file or remove it; docker/login-action writes it' });
}

export async function prepareCredentials(c: CredentialInputs): Promise<PreparedCredentials> {
  const notes: string[] = [];
  const secrets: string[] = [];
  const existingDir = configDir(c.env);
  const existing = await readConfig(existingDir);
  const config: ConfigJson = structuredClone(existing ?? {});
  const auths: Record<string, Record<string, unknown>> = { ...(config.auths ?? {}) };
  let changed = false;

  const put = (registry: string, username: string, password: string) => {
    const key = configKey(registry);
    for (const k of Object.keys(auths)) if (hostOfKey(k) === hostOfKey(key)) delete auths[k];
    const auth = Buffer.from(`${username}:${password}`).toString('base64');
    auths[key] = { auth };
    secrets.push(password, auth);
    // A helper configured for this registry would win over "auths"; the inputs are meant to.
    if (config.credHelpers && hasEntryFor(config.credHelpers, registry)) {
      config.credHelpers = Object.fromEntries(Object.entries(config.credHelpers).filter(([k]) => hostOfKey(k) !== hostOfKey(key)));
    }
    changed = true;
  };

  if (c.username !== '' || c.password !== '') {
    if (c.username === '' || c.password === '') {
      throw new GantryError('INVALID_ARGUMENT', `input "${c.username === '' ? 'username' : 'password'}" is empty but "${c.username === '' ? 'password' : 'username'}" is set`, {
        hint: 'give both username and password, or neither (then docker/login-action\'s config.json or GITHUB_TOKEN for ghcr.io is used)',
      });
    }
    const registry = c.registry || c.pushRegistries[0] || 'docker.io';
    put(registry, c.username, c.password);
    notes.push(`credentials for ${registry}: the username/password inputs`);
  } else if (c.registry !== '') {
    throw new GantryError('INVALID_ARGUMENT', 'input "registry" is set but "username" and "password" are not', { hint: 'add username and password, or drop registry' });
  }

  const explicit = c.username !== '' ? (c.registry || c.pushRegistries[0] || 'docker.io').toLowerCase() : undefined;
  for (const registry of c.pushRegistries) {
    if (registry !== 'ghcr.io' || explicit === 'ghcr.io') continue;
    const configured = hasEntryFor(existing?.auths, registry) || hasEntryFor(existing?.credHelpers, registry) || !!existing?.credsStore || (c.env.DOCKER_AUTH_CONFIG ?? '').includes('ghcr.io');
    if (configured) {
      notes.push(`credentials for ${registry}: ${join(existingDir, 'config.json')}`);
      continue;
    }
    if (c.githubToken === '') {
      notes.push(`no credentials for ${registry}: no config.json entry, no username/password input and no GITHUB_TOKEN`);
      continue;
    }
    put(registry, c.actor || 'x-access-token', c.githubToken);
    notes.push(`credentials for ${registry}: GITHUB_TOKEN as ${c.actor || 'x-access-token'}`);
  }

  if (!changed) {
    if (existing) notes.push(`registry credentials: ${join(existingDir, 'config.json')}`);
    return { dockerConfigDir: undefined, notes, secrets, cleanup: async () => {} };
  }
  config.auths = auths;
  const dir = await mkdtemp(join(c.tempRoot, 'gantry-docker-config-'));
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n', { mode: 0o600 });
  if (config.credsStore) notes.push(`note: ${join(existingDir, 'config.json')} names credsStore "${config.credsStore}", which docker consults before "auths"`);
  return { dockerConfigDir: dir, notes, secrets, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
