/**
 * Every failure gantry reports is a GantryError: a stable machine-readable code, a message that
 * says what happened and, where we know it, what to do about it. Lower layers throw; callers wrap
 * with what they were doing (`pushing blob sha256:… to ghcr.io/…`) so the final message reads as a
 * chain from the user's intent down to the cause. Only the CLI/Action edge prints and maps codes
 * to exit statuses.
 */
export type ErrorCode =
  // generic
  | 'INTERNAL'
  | 'INVALID_ARGUMENT'
  | 'UNSUPPORTED'
  | 'NOT_FOUND'
  | 'IO'
  | 'ABORTED'
  // content
  | 'DIGEST_INVALID'
  | 'DIGEST_MISMATCH'
  | 'SIZE_MISMATCH'
  | 'MANIFEST_INVALID'
  | 'CONFIG_INVALID'
  | 'LAYOUT_INVALID'
  | 'ARCHIVE_INVALID'
  | 'PLATFORM_NOT_FOUND'
  // registry
  | 'REFERENCE_INVALID'
  | 'REGISTRY_UNREACHABLE'
  | 'REGISTRY_ERROR'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'CREDENTIALS'
  | 'TOO_MANY_REQUESTS'
  // dockerfile
  | 'DOCKERFILE_SYNTAX'
  | 'DOCKERFILE_INVALID'
  | 'DOCKERIGNORE_INVALID'
  | 'BUILD_ARG'
  | 'STAGE_NOT_FOUND'
  // build
  | 'BUILD_FAILED'
  | 'CONTEXT_INVALID'
  | 'UNSAFE_PATH'
  // run
  | 'SANDBOX_FAILED';

export interface ErrorDetails {
  /** What the user can do about it, printed after the message. */
  hint?: string;
  /** Structured extras (registry error codes, file locations, HTTP status). */
  [key: string]: unknown;
}

export class GantryError extends Error {
  readonly code: ErrorCode;
  readonly details: ErrorDetails;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'GantryError';
    this.code = code;
    this.details = details;
  }

  get hint(): string | undefined {
    return this.details.hint;
  }
}

/**
 * Adds context to an error while keeping the innermost code (the root cause decides the exit
 * status and what the user sees as the error kind). Non-gantry errors become INTERNAL or IO.
 */
export function wrapError(err: unknown, doing: string, code?: ErrorCode): GantryError {
  if (err instanceof GantryError) {
    const wrapped = new GantryError(code ?? err.code, `${doing}: ${err.message}`, { ...err.details }, { cause: err });
    return wrapped;
  }
  const e = err as NodeJS.ErrnoException | undefined;
  const msg = e && typeof e.message === 'string' ? e.message : String(err);
  const inferred: ErrorCode = code ?? (e && typeof e.code === 'string' && /^E[A-Z]+$/.test(e.code) ? 'IO' : 'INTERNAL');
  return new GantryError(inferred, `${doing}: ${msg}`, e && typeof e.code === 'string' ? { errno: e.code } : {}, { cause: err });
}

/** Runs `fn`, wrapping any failure with `doing`. */
export async function withContext<T>(doing: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw wrapError(err, doing);
  }
}

export function isGantryError(err: unknown, code?: ErrorCode): err is GantryError {
  return err instanceof GantryError && (code === undefined || err.code === code);
}
