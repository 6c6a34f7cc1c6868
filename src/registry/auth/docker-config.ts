import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { GantryError } from '../../util/errors.js';
import { DOCKER_HUB, DOCKER_HUB_CONFIG_KEY, normalizeRegistry } from '../reference.js';
import type { Credentials } from './credentials.js';

/** The parts of docker's config.json that concern registry auth. */
export interface DockerConfig {
  /** File it was read from (or `DOCKER_AUTH_CONFIG`); undefined when there is none. */
  path: string | undefined;
  auths: Record<string, AuthEntry>;
  credHelpers: Record<string, string>;
  credsStore: string | undefined;
}

export interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
  registrytoken?: string;
}

export function dockerConfigDir(env: NodeJS.ProcessEnv, explicit?: string): string {
  if (explicit) return explicit;
  if (env.DOCKER_CONFIG) return env.DOCKER_CONFIG;
  return join(env.HOME || homedir(), '.docker');
}

/** Reads `<dir>/config.json`; a missing file is an empty config, a malformed one an error. */
export async function loadDockerConfig(env: NodeJS.ProcessEnv, explicitDir?: string): Promise<DockerConfig> {
  const path = join(dockerConfigDir(env, explicitDir), 'config.json');
  let text: string | undefined;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') {
      throw new GantryError('CREDENTIALS', `reading docker config ${path}: ${(err as Error).message}`);
    }
  }
  const config: DockerConfig = text === undefined ? { path: undefined, auths: {}, credHelpers: {}, credsStore: undefined } : parseDockerConfig(text, path);
  // DOCKER_AUTH_CONFIG (GitLab runners, docker CLI) is layered over the file: it wins per key.
  const envConfig = env.DOCKER_AUTH_CONFIG;
  if (envConfig && envConfig.trim() !== '') {
    const extra = parseDockerConfig(envConfig, 'DOCKER_AUTH_CONFIG');
    config.auths = { ...config.auths, ...extra.auths };
    config.path ??= 'DOCKER_AUTH_CONFIG';
  }
  return config;
}

export function parseDockerConfig(text: string, path: string): DockerConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new GantryError('CREDENTIALS', `docker config ${path} is not valid JSON: ${(err as Error).message}`, {
      hint: 'fix or remove the file; it is the same file `docker login` writes',
    });
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new GantryError('CREDENTIALS', `docker config ${path} must be a JSON object`);
  }
  const obj = raw as Record<string, unknown>;
  const auths: Record<string, AuthEntry> = {};
  if (obj.auths && typeof obj.auths === 'object') {
    for (const [k, v] of Object.entries(obj.auths as Record<string, unknown>)) {
      if (v && typeof v === 'object') auths[k] = v as AuthEntry;
    }
  }
  const credHelpers: Record<string, string> = {};
  if (obj.credHelpers && typeof obj.credHelpers === 'object') {
    for (const [k, v] of Object.entries(obj.credHelpers as Record<string, unknown>)) {
      if (typeof v === 'string' && v !== '') credHelpers[k] = v;
    }
  }
  const credsStore = typeof obj.credsStore === 'string' && obj.credsStore !== '' ? obj.credsStore : undefined;
  return { path, auths, credHelpers, credsStore };
}

/**
 * Reduces a config key to the registry it names: legacy keys are URLs (`https://host:port/v1/`)
 * and Docker Hub has several spellings.
 */
export function configKeyToRegistry(key: string): string {
  let host = key.trim();
  host = host.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '');
  const slash = host.indexOf('/');
  if (slash !== -1) host = host.slice(0, slash);
  host = normalizeRegistry(host);
  if (host === 'registry-1.docker.io') return DOCKER_HUB;
  return host;
}

/** The key docker login writes for a registry, which is also what helpers are asked for. */
export function serverUrlFor(registry: string): string {
  return normalizeRegistry(registry) === DOCKER_HUB ? DOCKER_HUB_CONFIG_KEY : normalizeRegistry(registry);
}

/** Finds the entry of a map keyed by config keys that names `registry`; exact keys win. */
export function lookupByRegistry<T>(map: Record<string, T>, registry: string): { key: string; value: T } | undefined {
  const want = normalizeRegistry(registry);
  const exact = [serverUrlFor(want), want];
  for (const k of exact) if (k in map) return { key: k, value: map[k]! };
  for (const [k, v] of Object.entries(map)) if (configKeyToRegistry(k) === want) return { key: k, value: v };
  return undefined;
}

export function credentialsFromEntry(entry: AuthEntry, source: string): Credentials {
  const creds: Credentials = { source };
  if (entry.auth) {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon === -1) {
      throw new GantryError('CREDENTIALS', `the "auth" field in ${source} is not base64 of "username:password"`, {
        hint: 'recreate it with `echo -n user:token | base64` or run docker login again',
      });
    }
    creds.username = decoded.slice(0, colon);
    creds.password = decoded.slice(colon + 1);
  }
  if (entry.username) creds.username = entry.username;
  if (entry.password) creds.password = entry.password;
  if (entry.identitytoken) creds.identityToken = entry.identitytoken;
  if (entry.registrytoken) creds.registryToken = entry.registrytoken;
  return creds;
}
