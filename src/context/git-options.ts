/**
 * Kaniko's `--git` flag: comma-separated `key=value` pairs
 * (`branch=x,single-branch=true,recurse-submodules=false,insecure-skip-tls=false`). Booleans take
 * the spellings Go's strconv.ParseBool takes, since that is what existing recipes were written for.
 */
import { GantryError } from '../util/errors.js';

export interface GitCloneOptions {
  /** Resolved against the remote as refs/heads/<branch>, then refs/tags/<branch>. */
  branch?: string;
  /** Accepted for compatibility; gantry always fetches only the ref it builds. */
  singleBranch: boolean;
  recurseSubmodules: boolean;
  insecureSkipTls: boolean;
}

export const DEFAULT_GIT_OPTIONS: GitCloneOptions = { singleBranch: false, recurseSubmodules: false, insecureSkipTls: false };

const TRUE = new Set(['1', 't', 'T', 'true', 'TRUE', 'True']);
const FALSE = new Set(['0', 'f', 'F', 'false', 'FALSE', 'False']);

function bool(key: string, value: string): boolean {
  if (TRUE.has(value)) return true;
  if (FALSE.has(value)) return false;
  throw new GantryError('INVALID_ARGUMENT', `--git ${key}=${value}: "${value}" is not a boolean`, { hint: 'use true or false' });
}

/** Parses one or more `--git` values; later keys override earlier ones, as repeated flags do. */
export function parseGitOptions(values: string | readonly string[] | undefined): GitCloneOptions {
  const out: GitCloneOptions = { ...DEFAULT_GIT_OPTIONS };
  const list = values === undefined ? [] : typeof values === 'string' ? [values] : values;
  for (const value of list) {
    for (const pair of value.split(',')) {
      if (pair.trim() === '') continue;
      const eq = pair.indexOf('=');
      if (eq < 0) {
        throw new GantryError('INVALID_ARGUMENT', `--git ${pair}: expected key=value`, { hint: 'for example --git branch=main,single-branch=true' });
      }
      const key = pair.slice(0, eq).trim();
      const v = pair.slice(eq + 1).trim();
      switch (key) {
        case 'branch':
          if (v === '') delete out.branch;
          else out.branch = v;
          break;
        case 'single-branch':
          out.singleBranch = bool(key, v);
          break;
        case 'recurse-submodules':
          out.recurseSubmodules = bool(key, v);
          break;
        case 'insecure-skip-tls':
          out.insecureSkipTls = bool(key, v);
          break;
        default:
          throw new GantryError('INVALID_ARGUMENT', `--git ${pair}: unknown option "${key}"`, {
            hint: 'known options: branch, single-branch, recurse-submodules, insecure-skip-tls',
          });
      }
    }
  }
  return out;
}
