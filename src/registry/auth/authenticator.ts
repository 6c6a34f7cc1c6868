import type { Logger } from '../../util/logger.js';
import { normalizeRegistry } from '../reference.js';
import type { Challenge } from './challenge.js';
import { basicAuthHeader, type Credentials } from './credentials.js';
import type { Keychain } from './keychain.js';
import { scopeKey } from './scope.js';
import { fetchToken, type Send, type Token } from './token.js';

export interface AuthorizeParams {
  registry: string;
  challenge: Challenge | undefined;
  scopes: string[];
  allowHttpRealm: boolean;
  signal?: AbortSignal;
}

/**
 * Turns (registry, challenge, scopes) into an Authorization header. Tokens are cached per
 * registry + scope set and shared by concurrent requests (one token request, not one per blob).
 */
export class Authenticator {
  private readonly tokens = new Map<string, Promise<Token>>();
  /** A refresh token handed out by an OAuth2 exchange replaces the configured secret (as ggcr does). */
  private readonly refreshed = new Map<string, string>();

  constructor(
    private readonly keychain: Keychain,
    private readonly send: Send,
    private readonly clientId: string,
    private readonly logger: Logger,
  ) {}

  credentials(registry: string): Promise<Credentials> {
    return this.keychain.resolve(registry);
  }

  configPath(): string {
    return this.keychain.describe();
  }

  async authorization(p: AuthorizeParams): Promise<string | undefined> {
    if (!p.challenge) return undefined;
    const registry = normalizeRegistry(p.registry);
    let creds = await this.keychain.resolve(registry);
    if (p.challenge.scheme === 'basic') {
      if (creds.username !== undefined && creds.password !== undefined) return basicAuthHeader(creds.username, creds.password);
      return creds.registryToken ? `Bearer ${creds.registryToken}` : undefined;
    }
    if (p.challenge.scheme !== 'bearer') return undefined;
    if (creds.registryToken) return `Bearer ${creds.registryToken}`;
    const refresh = this.refreshed.get(registry);
    if (refresh) creds = { ...creds, identityToken: refresh };
    const key = `${registry}|${p.challenge.params.realm ?? ''}|${p.challenge.params.service ?? ''}|${scopeKey(p.scopes)}`;
    const cached = this.tokens.get(key);
    if (cached) {
      const tok = await cached.catch(() => undefined);
      if (tok && tok.renewAt > Date.now()) return `Bearer ${tok.token}`;
      if (this.tokens.get(key) === cached) this.tokens.delete(key);
    }
    let pending = this.tokens.get(key);
    if (!pending) {
      this.logger.log('debug', `requesting token for ${registry} scope ${p.scopes.join(' ')}`);
      pending = fetchToken(this.send, {
        registry,
        challenge: p.challenge,
        scopes: p.scopes,
        credentials: creds,
        clientId: this.clientId,
        allowHttpRealm: p.allowHttpRealm,
        signal: p.signal,
        configPath: this.keychain.describe(),
      });
      this.tokens.set(key, pending);
      pending.catch(() => {
        if (this.tokens.get(key) === pending) this.tokens.delete(key);
      });
    }
    const tok = await pending;
    if (tok.refreshToken) this.refreshed.set(registry, tok.refreshToken);
    return `Bearer ${tok.token}`;
  }

  /** Forgets cached tokens for a registry+scopes (after the registry rejected one). */
  invalidate(registry: string, scopes: string[]): void {
    const suffix = `|${scopeKey(scopes)}`;
    const prefix = `${normalizeRegistry(registry)}|`;
    for (const k of this.tokens.keys()) if (k.startsWith(prefix) && k.endsWith(suffix)) this.tokens.delete(k);
  }
}
