import { execFile } from 'node:child_process';
import { GantryError } from '../../util/errors.js';

/**
 * Device nodes and FIFOs. Node has no mknod(2), so coreutils' `mknod`/`mkfifo` do it; layers
 * rarely hold more than a handful of these, so one process each is fine. Nodes are created 0600
 * and get their real mode after chown (chown would clear setuid/setgid).
 */
export async function makeDeviceNode(
  path: string,
  kind: 'char' | 'block',
  major: number,
  minor: number,
  signal?: AbortSignal,
): Promise<void> {
  await run('mknod', ['-m', '600', '--', path, kind === 'char' ? 'c' : 'b', String(major), String(minor)], signal);
}

export async function makeFifo(path: string, signal?: AbortSignal): Promise<void> {
  await run('mkfifo', ['-m', '600', '--', path], signal);
}

/** Errors carry `errno` EPERM when the kernel refused (no CAP_MKNOD, user namespace). */
function run(tool: string, args: string[], signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(tool, args, { env: { ...process.env, LC_ALL: 'C' }, signal }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        return reject(
          new GantryError('UNSUPPORTED', `\`${tool}\` is not installed`, {
            hint: 'install coreutils (it provides mknod and mkfifo)',
          }),
        );
      }
      if (code === 'ABORT_ERR') return reject(new GantryError('ABORTED', `${tool} was cancelled`));
      const text = String(stderr).trim() || err.message;
      const errno = /Operation not permitted/.test(text) ? 'EPERM' : /Permission denied/.test(text) ? 'EACCES' : undefined;
      reject(new GantryError('IO', `${tool} failed: ${text}`, errno ? { errno } : {}));
    });
  });
}
