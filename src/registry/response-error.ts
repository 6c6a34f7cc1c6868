import type { IncomingHttpHeaders } from 'node:http';
import { GantryError, type ErrorCode } from '../util/errors.js';
import type { HttpResponse } from './transport.js';
import { headerValue } from './transport.js';
import { parseChallenges } from './auth/challenge.js';

/** One entry of the distribution-spec error body `{"errors":[{code,message,detail}]}`. */
export interface RegistryErrorEntry {
  code: string;
  message?: string;
  detail?: unknown;
}

/** What the failed request was about; it decides the hint. */
export interface ErrorContext {
  /** `pulling manifest ghcr.io/o/app:1.0`: the start of the message. */
  what: string;
  registry: string;
  kind?: 'manifest' | 'blob' | 'upload' | 'tags' | 'token' | 'ping' | 'permission';
  /** Where credentials came from (or `anonymous`), so 401 messages say which ones failed. */
  credentialsSource?: string;
  /** Path of config.json we read, for the 401 hint. */
  configPath?: string;
}

export function parseErrorBody(text: string): RegistryErrorEntry[] {
  try {
    const parsed = JSON.parse(text) as { errors?: unknown; details?: unknown; error?: unknown; error_description?: unknown };
    if (Array.isArray(parsed.errors)) {
      return parsed.errors
        .filter((e): e is Record<string, unknown> => !!e && typeof e === 'object')
        .map((e) => ({ code: String(e.code ?? 'UNKNOWN'), message: typeof e.message === 'string' ? e.message : undefined, detail: e.detail }));
    }
    // OAuth2 token servers answer {"error": "...", "error_description": "..."}
    if (typeof parsed.error === 'string') {
      return [{ code: parsed.error.toUpperCase(), message: typeof parsed.error_description === 'string' ? parsed.error_description : undefined }];
    }
  } catch {
    // not JSON: the caller keeps the text
  }
  return [];
}

function codeFor(status: number, registryCodes: string[], kind: ErrorContext['kind'], deniedByScope: boolean): ErrorCode {
  // A token that authenticates but lacks the action: a permission problem, not a login problem.
  if (deniedByScope) return 'DENIED';
  if (status === 401 || registryCodes.includes('UNAUTHORIZED')) return 'UNAUTHORIZED';
  if (status === 403 || registryCodes.includes('DENIED')) return 'DENIED';
  if (status === 429 || registryCodes.includes('TOOMANYREQUESTS')) return 'TOO_MANY_REQUESTS';
  if (registryCodes.includes('MANIFEST_INVALID') || registryCodes.includes('MANIFEST_BLOB_UNKNOWN')) return 'MANIFEST_INVALID';
  if (registryCodes.includes('DIGEST_INVALID') && kind !== 'manifest') return 'DIGEST_MISMATCH';
  if (status === 404) return 'NOT_FOUND';
  return 'REGISTRY_ERROR';
}

function hintFor(code: ErrorCode, status: number, registryCodes: string[], ctx: ErrorContext): string | undefined {
  const ghcr = ctx.registry === 'ghcr.io' || ctx.registry.endsWith('.ghcr.io');
  switch (code) {
    case 'UNAUTHORIZED': {
      const where = ctx.configPath ? ` or fix "auths" in ${ctx.configPath} (directory from $DOCKER_CONFIG, default ~/.docker)` : '';
      const used = ctx.credentialsSource && ctx.credentialsSource !== 'anonymous' ? `the credentials from ${ctx.credentialsSource} were rejected; ` : 'no credentials were found for it; ';
      return `${used}check the username and password/token for ${ctx.registry}: run \`docker login ${ctx.registry}\`${where}`;
    }
    case 'DENIED':
      if (ghcr) {
        return 'the workflow needs `permissions: packages: write` (GITHUB_TOKEN) or a PAT with write:packages; the package must be linked to the repository (package settings > Manage Actions access)';
      }
      return `the credentials are valid but lack permission for this repository on ${ctx.registry}: check the account's access (push needs write access)`;
    case 'TOO_MANY_REQUESTS':
      return ctx.registry === 'docker.io'
        ? 'Docker Hub rate limit reached: log in (docker login) for a higher limit, or use a pull-through mirror (--registry-mirror)'
        : `${ctx.registry} is rate limiting requests; retry later or reduce --concurrency`;
    case 'NOT_FOUND':
      if (ctx.kind === 'manifest') {
        return registryCodes.includes('NAME_UNKNOWN')
          ? 'repository not found: check the image name (and that your credentials can see it; private repositories often answer 404)'
          : 'tag not found: check the tag, or list tags with `gantry inspect --tags`';
      }
      if (ctx.kind === 'blob') return 'the registry does not have this blob; the image may have been garbage-collected or pushed incompletely';
      return undefined;
    case 'MANIFEST_INVALID':
      return registryCodes.includes('MANIFEST_BLOB_UNKNOWN') ? 'the registry does not have every blob the manifest references; push the blobs first' : undefined;
    default:
      if (status === 413) return 'the registry rejected the request size; try chunked uploads with a smaller chunk size';
      if (status === 416 && ghcr) return 'GHCR rejects upload chunks above 4 MiB: use a chunk size <= 4194304';
      return undefined;
  }
}

/** Builds the error for an unexpected response, reading (at most 64 KiB of) its body. */
export async function errorFromResponse(res: HttpResponse, ctx: ErrorContext): Promise<GantryError> {
  let text = '';
  try {
    text = await readLimited(res.body, 64 * 1024);
  } catch {
    // the status alone still says what happened
  }
  return errorFromParts(res.status, res.headers, text, ctx);
}

export function errorFromParts(status: number, headers: IncomingHttpHeaders, text: string, ctx: ErrorContext): GantryError {
  const entries = parseErrorBody(text);
  const registryCodes = entries.map((e) => e.code);
  const challenge = parseChallenges(headers['www-authenticate']).find((c) => c.scheme === 'bearer');
  const authenticated = ctx.credentialsSource !== undefined && ctx.credentialsSource !== 'anonymous';
  const deniedByScope = status === 401 && authenticated && challenge?.params.error === 'insufficient_scope';
  const code = codeFor(status, registryCodes, ctx.kind, deniedByScope);
  const described = entries.length
    ? entries.map((e) => `${e.code}${e.message ? `: ${e.message}` : ''}${e.detail !== undefined && e.detail !== null && typeof e.detail !== 'object' ? ` (${String(e.detail)})` : ''}`).join('; ')
    : text.trim().slice(0, 200) || statusText(status);
  const hint = hintFor(code, status, registryCodes, ctx);
  const details: Record<string, unknown> = { status, registryCodes, registry: ctx.registry };
  if (hint) details.hint = hint;
  const retryAfter = headerValue(headers, 'retry-after');
  if (retryAfter) details.retryAfter = retryAfter;
  const auth = headerValue(headers, 'www-authenticate');
  if (auth) details.wwwAuthenticate = auth;
  return new GantryError(code, `${ctx.what}: ${ctx.registry} answered ${status} ${statusText(status)}: ${described}`, details);
}

const TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  409: 'Conflict',
  413: 'Payload Too Large',
  416: 'Range Not Satisfiable',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

function statusText(status: number): string {
  return TEXT[status] ?? 'HTTP error';
}

/** Reads a small body (error texts, manifests, tokens) with a hard limit so a hostile server cannot exhaust memory. */
export async function readLimited(body: AsyncIterable<Buffer | Uint8Array> & { destroy?: (err?: Error) => void }, limit: number, what = 'response body'): Promise<string> {
  return (await readLimitedBuffer(body, limit, what)).toString('utf8');
}

export async function readLimitedBuffer(body: AsyncIterable<Buffer | Uint8Array> & { destroy?: (err?: Error) => void }, limit: number, what = 'response body'): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > limit) {
      body.destroy?.();
      throw new GantryError('MANIFEST_INVALID', `${what} is larger than ${limit} bytes`, { limit });
    }
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}

export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || status === 500 || status === 502 || status === 503 || status === 504;
}
