import { isAbsolute, posix } from 'node:path';
import { GantryError } from '../util/errors.js';
import type { RunSpec } from './types.js';

const ENV_ENTRY = /^[^=]+=/;

/** What every backend refuses before touching anything: a RunSpec the kernel would misread. */
export function validateRunSpec(spec: RunSpec): void {
  const bad = (msg: string) => new GantryError('INVALID_ARGUMENT', `invalid RUN: ${msg}`);
  if (spec.argv.length === 0 || spec.argv[0] === '') throw bad('empty command');
  for (const e of spec.env) if (!ENV_ENTRY.test(e) || e.includes('\0')) throw bad(`environment entry ${JSON.stringify(e)} is not KEY=VALUE`);
  if (!spec.cwd.startsWith('/')) throw bad(`working directory "${spec.cwd}" is not absolute`);
  const ids = [spec.user.uid, spec.user.gid, ...spec.user.groups];
  if (!ids.every((n) => Number.isInteger(n) && n >= 0 && n < 2 ** 32 - 1)) throw bad(`user ${JSON.stringify(spec.user)} has an invalid id`);
  for (const m of spec.mounts) {
    if (!posix.isAbsolute(m.target)) throw bad(`mount target "${m.target}" is not absolute`);
    if (m.type !== 'tmpfs' && !isAbsolute(m.source)) throw bad(`mount source "${m.source}" is not an absolute host path`);
  }
}
