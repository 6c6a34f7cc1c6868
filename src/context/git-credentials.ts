// Apart from git-clone.ts so that the context index exports it without loading isomorphic-git.
import type { GitCredentials, GitSource } from './location.js';

/**
 * Kaniko's precedence: GIT_TOKEN (as the user name, empty password) over GIT_USERNAME /
 * GIT_PASSWORD. Credentials in the URL itself win over both. GIT_AUTH_TOKEN (BuildKit's secret
 * name, what build-push-action passes) is the last resort, as GitHub's x-access-token user.
 */
export function gitCredentials(source: GitSource, env: NodeJS.ProcessEnv): GitCredentials | undefined {
  if (source.urlCredentials) return source.urlCredentials;
  const token = env.GIT_TOKEN ?? '';
  if (token !== '') return { username: token, password: '' };
  const username = env.GIT_USERNAME ?? '';
  const password = env.GIT_PASSWORD ?? '';
  if (username !== '' || password !== '') return { username, password };
  const authToken = env.GIT_AUTH_TOKEN ?? '';
  if (authToken !== '') return { username: 'x-access-token', password: authToken };
  return undefined;
}
