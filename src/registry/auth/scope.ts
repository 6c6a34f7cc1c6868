/** Token scopes (distribution spec/auth/scope.md). */
export type Action = 'pull' | 'push' | 'delete' | '*';

export function repositoryScope(repository: string, actions: Action[]): string {
  return `repository:${repository}:${actions.join(',')}`;
}

export const pullScope = (repository: string): string => repositoryScope(repository, ['pull']);
export const pushScope = (repository: string): string => repositoryScope(repository, ['pull', 'push']);

/** Stable key for a scope set: order and duplicates do not change what a token grants. */
export function scopeKey(scopes: string[]): string {
  return [...new Set(scopes)].sort().join(' ');
}
