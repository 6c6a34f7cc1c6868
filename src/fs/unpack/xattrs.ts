import { spawn } from 'node:child_process';
import { GantryError } from '../../util/errors.js';

/**
 * Extended attributes (security.capability above all: `setcap` results must survive).
 *
 * Node has no setxattr(2). Decision: use `setfattr` from the `attr` package, fed once per layer
 * through `setfattr -h --restore=-` (getfattr's dump format on stdin), so a layer costs one process
 * however many files carry xattrs. The tool is looked up only when a layer actually has xattrs;
 * when it is missing, unpacking fails with a hint rather than silently dropping capabilities. A
 * native addon would avoid the dependency but needs a compiler at install time.
 */

/** Overlayfs bookkeeping: meaningless in an image and harmful on a tree later used as a lowerdir. */
const DROPPED_PREFIXES = ['trusted.overlay.', 'user.overlay.'];

export function keptXattrs(attrs: Record<string, Buffer> | undefined): Record<string, Buffer> | undefined {
  if (!attrs) return undefined;
  const kept = Object.entries(attrs).filter(([name]) => name !== '' && !DROPPED_PREFIXES.some((p) => name.startsWith(p)));
  return kept.length > 0 ? Object.fromEntries(kept) : undefined;
}

export { findExecutable } from '../../util/find-executable.js';

export function setfattrMissing(): GantryError {
  return new GantryError('UNSUPPORTED', 'the layer has extended attributes (e.g. file capabilities) but `setfattr` is not installed', {
    hint: 'install the `attr` package (apt-get install attr / apk add attr) so xattrs such as security.capability are kept',
  });
}

/**
 * getfattr --dump quoting: setfattr un-escapes `\ooo` in file and attribute names. Everything
 * outside printable ASCII, the backslash and (in names) `=` is escaped so any byte string survives.
 */
function quote(text: string, extra: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    const ch = String.fromCharCode(byte);
    if (byte <= 0x20 || byte >= 0x7f || ch === '\\' || extra.includes(ch)) out += '\\' + byte.toString(8).padStart(3, '0');
    else out += ch;
  }
  return out;
}

/** One record of the restore format; values hex-encoded, which setfattr decodes byte-exactly. */
export function encodeRestoreRecord(hostPath: string, attrs: Record<string, Buffer>): string {
  let out = `# file: ${quote(hostPath, '')}\n`;
  for (const [name, value] of Object.entries(attrs)) out += `${quote(name, '=')}=0x${value.toString('hex')}\n`;
  return out + '\n';
}

export interface SetfattrResult {
  /** setfattr's complaints, one per attribute it could not set (empty on success). */
  failures: string[];
}

/** Runs one `setfattr -h --restore=-` over all records; symlinks themselves get their xattrs. */
export async function applyXattrs(
  setfattr: string,
  records: Iterable<[string, Record<string, Buffer>]>,
  signal?: AbortSignal,
): Promise<SetfattrResult> {
  const child = spawn(setfattr, ['-h', '--restore=-'], {
    stdio: ['pipe', 'ignore', 'pipe'],
    env: { ...process.env, LC_ALL: 'C' },
    signal,
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    if (stderr.length < 64 * 1024) stderr += chunk;
  });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve(code));
  });
  // An early exit (EPIPE) is reported through the exit status below, not as a write error.
  child.stdin.on('error', () => {});
  for (const [path, attrs] of records) {
    if (!child.stdin.write(encodeRestoreRecord(path, attrs))) {
      await new Promise<void>((resolve) => {
        child.stdin.once('drain', resolve);
        child.once('close', resolve);
      });
    }
  }
  child.stdin.end();
  let code: number | null;
  try {
    code = await exited;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ABORT_ERR') throw new GantryError('ABORTED', 'setting extended attributes was cancelled');
    if (e.code === 'ENOENT') throw setfattrMissing();
    throw err;
  }
  const failures = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  if (code !== 0 && failures.length === 0) failures.push(`setfattr exited with status ${code}`);
  return { failures };
}
