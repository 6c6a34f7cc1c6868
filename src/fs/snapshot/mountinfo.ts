import { readFileSync } from 'node:fs';

/** Decodes the `\ooo` octal escapes the kernel uses for spaces, tabs, newlines and backslashes. */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Mount points (field 5) of a /proc/PID/mountinfo text, in file order. */
export function parseMountinfo(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    if (fields.length < 5) continue;
    out.push(unescapeMountField(fields[4]!));
  }
  return out;
}

/**
 * The mount points strictly below `root`, as in-root absolute paths (`/etc/resolv.conf`), read
 * from /proc/self/mountinfo. Anything mounted into a container (volumes, secrets, the bind-mounted
 * resolv.conf) belongs to the runtime, not to the image being built.
 */
export function mountPointsUnder(root: string, mountinfo?: string): string[] {
  let text = mountinfo;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/mountinfo', 'utf8');
    } catch {
      return [];
    }
  }
  const prefix = root === '/' ? '/' : root.replace(/\/+$/, '') + '/';
  const out = new Set<string>();
  for (const mp of parseMountinfo(text)) {
    if (!mp.startsWith(prefix) || mp.length === prefix.length) continue;
    out.add('/' + mp.slice(prefix.length).replace(/\/+$/, ''));
  }
  return [...out];
}
