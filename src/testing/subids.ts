import { readFileSync, writeFileSync } from 'node:fs';

const FILES = ['/etc/subuid', '/etc/subgid'];

/** The end of the highest range in a subid file, so a new range overlaps nobody's. */
function freeSubIdStart(file: string): number {
  let end = 200000;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const f = line.split(':');
    if (f.length === 3) end = Math.max(end, Number(f[1]) + Number(f[2]));
  }
  return end;
}

/**
 * Gives a test user the same subordinate uid and gid range (for rootless builds), after every
 * existing range; returns its start. Tests that call this run as root, one file at a time.
 */
export function grantSubIdRange(user: string, count = 65536): number {
  const start = Math.max(...FILES.map(freeSubIdStart));
  for (const f of FILES) writeFileSync(f, `${user}:${start}:${count}\n`, { flag: 'a' });
  return start;
}

/** Removes every subordinate id line of a test user. */
export function revokeSubIdRange(user: string): void {
  for (const file of FILES) {
    const kept = readFileSync(file, 'utf8').split('\n').filter((l) => l !== '' && !l.startsWith(`${user}:`));
    writeFileSync(file, kept.length ? kept.join('\n') + '\n' : '');
  }
}
