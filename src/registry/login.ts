import { GantryError } from '../util/errors.js';
import type { RegistryClient } from './client.js';
import { fetchRefreshToken } from './auth/token.js';

/**
 * What `docker login` does against a token registry: trade username/password for an OAuth2
 * refresh token (grant_type=password, access_type=offline), to store as `identitytoken` instead
 * of the password. Undefined when the registry uses Basic auth or issues no refresh tokens.
 */
export async function obtainIdentityToken(client: RegistryClient, registry: string, creds: { username: string; password: string }, signal?: AbortSignal): Promise<string | undefined> {
  const ep = await client.endpoint(registry, signal);
  if (!ep.challenge || ep.challenge.scheme !== 'bearer') return undefined;
  try {
    const tok = await fetchRefreshToken((req) => client.sendWithRetry(req), {
      registry: ep.registry,
      challenge: ep.challenge,
      scopes: [],
      credentials: { ...creds, source: 'login' },
      clientId: client.options.userAgent.split('/')[0] ?? 'gantry',
      allowHttpRealm: ep.plainHttp,
      signal,
    });
    return tok.refreshToken;
  } catch (err) {
    if (err instanceof GantryError && (err.details.status === 404 || err.details.status === 405)) return undefined;
    throw err;
  }
}
