import { GantryError } from '../util/errors.js';

/**
 * A generated fstab, mounted with one `mount -a --fstab F` inside the RUN's mount namespace:
 * one exec for every mount instead of one per mount (spike: 5.7 ms instead of 15.6 ms per RUN).
 */

export interface FstabEntry {
  source: string;
  /** Host path of the mount point. */
  target: string;
  fstype: string;
  options: string[];
}

/** util-linux un-mangles `\ooo` in every field; escape what would split or comment a line. */
export function escapeFstabField(text: string): string {
  if (text === '') return 'none';
  return text.replace(/[\s\\#]/g, (c) => '\\' + c.charCodeAt(0).toString(8).padStart(3, '0'));
}

/** An option value may not hold a comma (the option separator) or a newline. */
export function checkOptionValue(what: string, value: string, extraForbidden = ''): void {
  const bad = [',', '\n', ...extraForbidden];
  if (bad.some((c) => value.includes(c))) {
    throw new GantryError('INVALID_ARGUMENT', `${what} "${value}" contains one of ${JSON.stringify(bad.join(''))}, which mount options cannot carry`, {
      hint: 'use a directory path without commas or colons for the build state',
    });
  }
}

export function formatFstab(entries: readonly FstabEntry[]): string {
  return entries
    .map((e) => [escapeFstabField(e.source), escapeFstabField(e.target), e.fstype, e.options.length ? e.options.map(escapeFstabField).join(',') : 'defaults', '0', '0'].join(' '))
    .join('\n') + '\n';
}
