/**
 * Turns isomorphic-git and network failures into GantryErrors that name the repository and say
 * what to do, with every credential string scrubbed from the text.
 */
import { GantryError, wrapError } from '../util/errors.js';
import { httpStatusOf } from './git-fetch.js';
import type { GitCredentials } from './location.js';

/** Replaces URL userinfo and every credential string; short secrets would mangle ordinary words. */
export function redactSecrets(text: string, credentials: GitCredentials | undefined): string {
  let out = text.replace(/(\b[a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/gi, '$1***@');
  for (const s of [credentials?.password, credentials?.username]) {
    if (s && s.length >= 4) out = out.split(s).join('***');
  }
  return out;
}

const NETWORK_ERRORS = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH']);
const TLS_ERRORS = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ERR_TLS/;

function authHint(credentials: GitCredentials | undefined): string {
  return credentials
    ? 'the server rejected the credentials: check GIT_TOKEN, or GIT_USERNAME and GIT_PASSWORD'
    : 'the repository needs credentials: set GIT_TOKEN, or GIT_USERNAME and GIT_PASSWORD';
}

export function translateGitError(err: unknown, repo: string, credentials: GitCredentials | undefined, signal?: AbortSignal): GantryError {
  if (signal?.aborted) return new GantryError('ABORTED', `fetching git repository ${repo}: aborted`, {}, { cause: err });
  if (err instanceof GantryError) {
    return new GantryError(err.code, redactSecrets(err.message, credentials), { ...err.details });
  }
  const status = httpStatusOf(err);
  if (status === 401) {
    return new GantryError('UNAUTHORIZED', `authentication failed for git repository ${repo} (HTTP 401)`, { hint: authHint(credentials), status });
  }
  if (status === 403) {
    return new GantryError('DENIED', `access denied to git repository ${repo} (HTTP 403)`, { hint: authHint(credentials), status });
  }
  if (status === 404) {
    return new GantryError('NOT_FOUND', `git repository ${repo} not found (HTTP 404)`, {
      hint: credentials ? 'check the URL, and that the credentials can read the repository' : 'check the URL; private repositories answer 404 without credentials: set GIT_TOKEN',
      status,
    });
  }
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code && TLS_ERRORS.test(code)) {
    return new GantryError('IO', `fetching git repository ${repo}: TLS: ${(err as Error).message} (${code})`, {
      hint: 'trust the server\'s CA (NODE_EXTRA_CA_CERTS=<ca.pem>), or skip verification with --git insecure-skip-tls=true',
      errno: code,
    });
  }
  const wrapped = wrapError(err, `fetching git repository ${repo}`, status ? 'IO' : undefined);
  const details = { ...wrapped.details };
  if (code && NETWORK_ERRORS.has(code)) details.hint = 'check the host name and port in the URL, and that this machine can reach it';
  return new GantryError(wrapped.code, redactSecrets(wrapped.message, credentials), details);
}
