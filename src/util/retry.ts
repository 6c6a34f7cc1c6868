import { setTimeout as sleep } from 'node:timers/promises';

export interface BackoffPolicy {
  /** Attempts in total, including the first. */
  attempts: number;
  /** First delay in ms; doubled each retry up to maxDelayMs. */
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { attempts: 5, baseDelayMs: 200, maxDelayMs: 10_000 };

/** Full jitter (AWS architecture blog): spreads retries of many clients hitting one registry. */
export function backoffDelay(policy: BackoffPolicy, retry: number, random: () => number = Math.random): number {
  const cap = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, retry - 1));
  return Math.floor(random() * cap);
}

/**
 * Parses a Retry-After header (seconds or HTTP date) into ms, clamped to maxMs so a hostile or
 * confused server cannot park a build for hours.
 */
export function parseRetryAfter(value: string | undefined | null, now = Date.now(), maxMs = 60_000): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Math.min(Number(trimmed) * 1000, maxMs);
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.min(at - now, maxMs));
}

export interface RetryDecision {
  retry: boolean;
  /** Overrides the computed backoff (e.g. from Retry-After). */
  delayMs?: number;
}

/**
 * Runs `fn` until it succeeds, `decide` says stop, or attempts run out. The last error is thrown
 * unchanged so callers keep its code.
 */
export async function retry<T>(
  fn: (attempt: number) => Promise<T>,
  decide: (err: unknown, attempt: number) => RetryDecision,
  policy: BackoffPolicy = DEFAULT_BACKOFF,
  signal?: AbortSignal,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt >= policy.attempts || signal?.aborted) throw err;
      const d = decide(err, attempt);
      if (!d.retry) throw err;
      await sleep(d.delayMs ?? backoffDelay(policy, attempt), undefined, signal ? { signal } : undefined);
    }
  }
}
