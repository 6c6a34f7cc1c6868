import { chmod, opendir, rm } from 'node:fs/promises';
import { join } from 'node:path';

/** chmod u+rwx on a tree's directories: overlayfs leaves `work/work` and `work/incompat/*` at mode 000. */
async function makeRemovable(path: string): Promise<void> {
  await chmod(path, 0o700).catch(() => undefined);
  let dir;
  try {
    dir = await opendir(path);
  } catch {
    return;
  }
  for await (const entry of dir) if (entry.isDirectory()) await makeRemovable(join(path, entry.name));
}

/**
 * Removes a directory that served as an overlay work dir (or holds one). Root ignores the 000
 * modes the kernel leaves; an unprivileged user (rootless probes) cannot, so they are fixed first.
 */
export async function removeTree(path: string): Promise<void> {
  await makeRemovable(path);
  await rm(path, { recursive: true, force: true, maxRetries: 3 });
}
