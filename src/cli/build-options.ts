import { existsSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { UsageError } from './flags.js';

/** `KEY=VALUE` -> { KEY: VALUE }; a bare `KEY` -> { KEY: undefined } (value taken from the environment later). */
export function parseBuildArgs(list: string[]): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const item of list) {
    const eq = item.indexOf('=');
    const key = eq < 0 ? item : item.slice(0, eq);
    if (!/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(key)) throw new UsageError(`invalid build argument "${item}": expected KEY=VALUE or KEY`);
    out[key] = eq < 0 ? undefined : item.slice(eq + 1);
  }
  return out;
}

export function parseLabels(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of list) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new UsageError(`invalid label "${item}": expected key=value`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

export function nonNegativeInt(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`invalid value "${value}" for --${flag}: expected a whole number >= 0`);
  return n;
}

/** Local context directory for commands that only read the Dockerfile (`--call`). */
export function localContextDir(context: string): string | undefined {
  const dir = context.startsWith('dir://') ? context.slice('dir://'.length) : context;
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(dir) ? undefined : resolve(dir);
}

/** Kaniko/docker resolution: the path as given (relative to cwd), else relative to the context. */
export function resolveDockerfilePath(dockerfile: string, contextDir: string | undefined): string {
  if (isAbsolute(dockerfile) || existsSync(dockerfile) || !contextDir) return resolve(dockerfile);
  return join(contextDir, dockerfile);
}
