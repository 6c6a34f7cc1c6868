import type { LookupFunction } from 'node:net';
import { readFile } from 'node:fs/promises';
import type { Logger } from '../util/logger.js';
import { silentLogger } from '../util/logger.js';
import type { BackoffPolicy } from '../util/retry.js';
import { GantryError } from '../util/errors.js';
import { normalizeRegistry } from './reference.js';

/**
 * Everything that changes how gantry talks to registries. Field names follow Kaniko's flags (see
 * comments) so the executor can map them one to one. Registry keys are names as users write
 * them (`docker.io`, `index.docker.io`, `127.0.0.1:5000`); they are normalised on lookup.
 */
export interface RegistryOptions {
  /** Plain HTTP allowed (`--insecure-registry`; `--insecure`/`--insecure-pull` = `true`). HTTPS is still tried first. */
  insecure?: string[] | true;
  /** No TLS verification (`--skip-tls-verify-registry`; `--skip-tls-verify` = `true`). */
  skipTlsVerify?: string[] | true;
  /** Extra CA bundles per registry (`--registry-certificate registry=path`). */
  caFiles?: Record<string, string[]>;
  /** mTLS client certificate per registry (`--registry-client-cert registry=cert,key`). */
  clientCerts?: Record<string, { cert: string; key: string }>;
  /** Docker Hub pull mirrors (`--registry-mirror`), `host[/path/prefix]`, tried in order. */
  mirrors?: string[];
  /** `--registry-map original=host[/prefix]`; several values per original are tried in order. */
  registryMaps?: Record<string, string[]>;
  /** Fail instead of falling back to the original registry when every mirror/map failed. */
  skipDefaultRegistryFallback?: boolean;
  /** Retries after the first attempt for each request and each blob transfer (`--push-retry` raises it). */
  retries?: number;
  /** Bytes per PATCH for chunked uploads; 0 = monolithic PUT. GHCR rejects chunks above 4 MiB. */
  chunkSize?: number;
  /** Parallel blob transfers. */
  concurrency?: number;
  /** Directory holding config.json; default `$DOCKER_CONFIG` or `~/.docker`. */
  dockerConfigDir?: string;
  /** Name resolution for direct connections instead of getaddrinfo (the in-place build captures it before the image's /etc replaces ours). */
  lookup?: LookupFunction;
  /** Environment for DOCKER_CONFIG, HOME, PATH (credential helpers), DOCKER_AUTH_CONFIG. */
  env?: NodeJS.ProcessEnv;
  logger?: Logger;
  userAgent?: string;
  /** Backoff between retries; tests shorten it. */
  backoff?: Partial<Omit<BackoffPolicy, 'attempts'>>;
}

export interface ResolvedRegistryOptions {
  insecure: Set<string> | true;
  skipTlsVerify: Set<string> | true;
  caFiles: Map<string, string[]>;
  clientCerts: Map<string, { cert: string; key: string }>;
  mirrors: string[];
  registryMaps: Map<string, string[]>;
  skipDefaultRegistryFallback: boolean;
  retries: number;
  chunkSize: number;
  concurrency: number;
  dockerConfigDir: string | undefined;
  lookup?: LookupFunction;
  env: NodeJS.ProcessEnv;
  logger: Logger;
  userAgent: string;
  backoff: { baseDelayMs: number; maxDelayMs: number };
}

export const DEFAULT_RETRIES = 3;
export const DEFAULT_CONCURRENCY = 4;
export const DEFAULT_USER_AGENT = 'gantry/0.1.0';
/** The largest PATCH GHCR accepts; callers who choose chunked uploads usually want this. */
export const GHCR_MAX_CHUNK = 4 * 1024 * 1024;

function keySet(list: string[] | true | undefined): Set<string> | true {
  if (list === true) return true;
  return new Set((list ?? []).map(normalizeRegistry));
}

function keyMap<T>(rec: Record<string, T> | undefined): Map<string, T> {
  const m = new Map<string, T>();
  for (const [k, v] of Object.entries(rec ?? {})) m.set(normalizeRegistry(k), v);
  return m;
}

export function resolveOptions(opts: RegistryOptions | ResolvedRegistryOptions = {}): ResolvedRegistryOptions {
  if (isResolved(opts)) return opts;
  const retries = opts.retries ?? DEFAULT_RETRIES;
  if (!Number.isInteger(retries) || retries < 0) throw new GantryError('INVALID_ARGUMENT', `retries must be a non-negative integer, got ${retries}`);
  const chunkSize = opts.chunkSize ?? 0;
  if (!Number.isInteger(chunkSize) || chunkSize < 0) throw new GantryError('INVALID_ARGUMENT', `chunkSize must be a non-negative integer, got ${chunkSize}`);
  const concurrency = opts.concurrency ?? DEFAULT_CONCURRENCY;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new GantryError('INVALID_ARGUMENT', `concurrency must be a positive integer, got ${concurrency}`);
  const maps = new Map<string, string[]>();
  for (const [k, v] of Object.entries(opts.registryMaps ?? {})) {
    const key = normalizeRegistry(k);
    maps.set(key, [...(maps.get(key) ?? []), ...v]);
  }
  return {
    insecure: keySet(opts.insecure),
    skipTlsVerify: keySet(opts.skipTlsVerify),
    caFiles: keyMap(opts.caFiles),
    clientCerts: keyMap(opts.clientCerts),
    mirrors: [...(opts.mirrors ?? [])],
    registryMaps: maps,
    skipDefaultRegistryFallback: opts.skipDefaultRegistryFallback ?? false,
    retries,
    chunkSize,
    concurrency,
    dockerConfigDir: opts.dockerConfigDir,
    ...(opts.lookup ? { lookup: opts.lookup } : {}),
    env: opts.env ?? process.env,
    logger: opts.logger ?? silentLogger,
    userAgent: opts.userAgent ?? DEFAULT_USER_AGENT,
    backoff: { baseDelayMs: opts.backoff?.baseDelayMs ?? 500, maxDelayMs: opts.backoff?.maxDelayMs ?? 10_000 },
  };
}

function isResolved(o: RegistryOptions | ResolvedRegistryOptions): o is ResolvedRegistryOptions {
  return (o as ResolvedRegistryOptions).caFiles instanceof Map;
}

function inSet(set: Set<string> | true, registry: string): boolean {
  return set === true || set.has(normalizeRegistry(registry));
}

const LOOPBACK_RE = /^(?:localhost|127(?:\.\d{1,3}){3}|\[::1\])(?::\d+)?$/i;

/** Loopback registries get the same HTTPS-then-HTTP fallback as docker and go-containerregistry give them. */
export function isLoopbackRegistry(registry: string): boolean {
  return LOOPBACK_RE.test(registry);
}

/** Whether plain HTTP may be used (after HTTPS failed) for this registry. */
export function allowsPlainHttp(opts: ResolvedRegistryOptions, registry: string): boolean {
  return inSet(opts.insecure, registry) || isLoopbackRegistry(registry);
}

export interface TlsSettings {
  ca?: Buffer[];
  rejectUnauthorized: boolean;
  cert?: Buffer;
  key?: Buffer;
}

/** TLS settings for a registry, reading the configured files; errors name the flag to fix. */
export async function tlsSettingsFor(opts: ResolvedRegistryOptions, registry: string): Promise<TlsSettings> {
  const key = normalizeRegistry(registry);
  const settings: TlsSettings = { rejectUnauthorized: !inSet(opts.skipTlsVerify, key) };
  const caFiles = opts.caFiles.get(key);
  if (caFiles && caFiles.length > 0) {
    settings.ca = await Promise.all(
      caFiles.map((f) =>
        readFile(f).catch((err: NodeJS.ErrnoException) => {
          throw new GantryError('INVALID_ARGUMENT', `reading CA certificate ${f} for registry ${registry}: ${err.message}`, {
            hint: 'check the path given to --registry-certificate',
          });
        }),
      ),
    );
  }
  const client = opts.clientCerts.get(key);
  if (client) {
    const read = (f: string) =>
      readFile(f).catch((err: NodeJS.ErrnoException) => {
        throw new GantryError('INVALID_ARGUMENT', `reading client certificate file ${f} for registry ${registry}: ${err.message}`, {
          hint: 'check the paths given to --registry-client-cert (registry=cert,key)',
        });
      });
    settings.cert = await read(client.cert);
    settings.key = await read(client.key);
  }
  return settings;
}

/** Whether the registry has any TLS configuration of its own (used to pick settings for token realms). */
export function hasTlsConfig(opts: ResolvedRegistryOptions, registry: string): boolean {
  const key = normalizeRegistry(registry);
  return opts.caFiles.has(key) || opts.clientCerts.has(key) || (opts.skipTlsVerify !== true && opts.skipTlsVerify.has(key));
}
