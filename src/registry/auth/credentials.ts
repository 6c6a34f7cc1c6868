/**
 * What we authenticate with. A registry token is sent as-is (`Bearer`); an identity token is an
 * OAuth2 refresh token exchanged at the token server; username/password go to the token server
 * as Basic (or directly to Basic-auth registries).
 */
export interface Credentials {
  username?: string;
  password?: string;
  identityToken?: string;
  registryToken?: string;
  /** Where they came from, for messages: `/root/.docker/config.json`, `docker-credential-gcr`. */
  source: string;
}

export const ANONYMOUS: Credentials = Object.freeze({ source: 'anonymous' });

export function isAnonymous(c: Credentials): boolean {
  return !c.username && !c.password && !c.identityToken && !c.registryToken;
}

export function basicAuthHeader(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}
