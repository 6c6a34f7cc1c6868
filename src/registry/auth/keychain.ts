import type { ResolvedRegistryOptions } from '../options.js';
import { normalizeRegistry } from '../reference.js';
import { credentialsFromHelper } from './credential-helper.js';
import { ANONYMOUS, type Credentials } from './credentials.js';
import { credentialsFromEntry, loadDockerConfig, lookupByRegistry, serverUrlFor, type DockerConfig } from './docker-config.js';

/** Finds credentials for a registry; the result is cached per registry for the keychain's life. */
export interface Keychain {
  resolve(registry: string): Promise<Credentials>;
  /** Where config.json is looked for, for hints. */
  describe(): string;
}

/**
 * docker's order: a `credHelpers` entry for the registry, else `credsStore`, else `auths`; nothing
 * found means anonymous. A helper that reports "not found" also means anonymous (as docker does),
 * not a fall back to `auths`.
 */
export class DockerKeychain implements Keychain {
  private config: Promise<DockerConfig> | undefined;
  private readonly cache = new Map<string, Promise<Credentials>>();

  constructor(private readonly opts: Pick<ResolvedRegistryOptions, 'env' | 'dockerConfigDir' | 'logger'>) {}

  private loadConfig(): Promise<DockerConfig> {
    this.config ??= loadDockerConfig(this.opts.env, this.opts.dockerConfigDir);
    return this.config;
  }

  describe(): string {
    const dir = this.opts.dockerConfigDir ?? this.opts.env.DOCKER_CONFIG ?? `${this.opts.env.HOME ?? '~'}/.docker`;
    return `${dir.replace(/\/+$/, '')}/config.json`;
  }

  resolve(registry: string): Promise<Credentials> {
    const key = normalizeRegistry(registry);
    let p = this.cache.get(key);
    if (!p) {
      p = this.lookup(key);
      this.cache.set(key, p);
      p.catch(() => this.cache.delete(key));
    }
    return p;
  }

  private async lookup(registry: string): Promise<Credentials> {
    const config = await this.loadConfig();
    const helper = lookupByRegistry(config.credHelpers, registry)?.value ?? config.credsStore;
    if (helper) {
      const found = await credentialsFromHelper(helper, serverUrlFor(registry), this.opts.env);
      this.opts.logger.log('debug', `credentials for ${registry}: ${found ? `from docker-credential-${helper}` : 'none (helper has none), anonymous'}`);
      return found ?? ANONYMOUS;
    }
    const entry = lookupByRegistry(config.auths, registry);
    if (entry) {
      this.opts.logger.log('debug', `credentials for ${registry}: ${config.path} key "${entry.key}"`);
      return credentialsFromEntry(entry.value, `${config.path} (auths["${entry.key}"])`);
    }
    return ANONYMOUS;
  }
}

/** Fixed credentials, e.g. from CLI flags or an Action input; anonymous for other registries. */
export class StaticKeychain implements Keychain {
  private readonly map = new Map<string, Credentials>();
  constructor(entries: Record<string, Omit<Credentials, 'source'> & { source?: string }>) {
    for (const [k, v] of Object.entries(entries)) this.map.set(normalizeRegistry(k), { source: 'explicit credentials', ...v });
  }
  async resolve(registry: string): Promise<Credentials> {
    return this.map.get(normalizeRegistry(registry)) ?? ANONYMOUS;
  }
  describe(): string {
    return 'explicit credentials';
  }
}
