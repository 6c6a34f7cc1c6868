import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, lstat, mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { tempDir, type TempDir } from '../testing/tmp.js';
import { contextDigest, ContextHashIndex, RACY_MARGIN_MS, type ContextFile } from './context-digest.js';

let tmp: TempDir;
before(async () => {
  tmp = await tempDir('cache-ctx');
});
after(async () => {
  await tmp?.cleanup();
});

const fsCjs = createRequire(import.meta.url)('node:fs') as typeof import('node:fs');

/** Counts file opens for reading under `root` while `fn` runs (the real reads, not our own stats). */
async function countingReads<T>(root: string, fn: () => Promise<T>): Promise<{ result: T; reads: number }> {
  const original = fsCjs.createReadStream;
  let reads = 0;
  fsCjs.createReadStream = ((path: Parameters<typeof original>[0], opts?: Parameters<typeof original>[1]) => {
    if (String(path).startsWith(root)) reads++;
    return original(path, opts);
  }) as typeof original;
  syncBuiltinESMExports();
  try {
    return { result: await fn(), reads };
  } finally {
    fsCjs.createReadStream = original;
    syncBuiltinESMExports();
  }
}

async function walk(root: string, rel = ''): Promise<ContextFile[]> {
  const out: ContextFile[] = [];
  for (const name of await readdir(join(root, rel))) {
    const path = rel ? `${rel}/${name}` : name;
    const stat = await lstat(join(root, path));
    const type = stat.isFile() ? 'file' : stat.isDirectory() ? 'dir' : stat.isSymbolicLink() ? 'symlink' : 'other';
    out.push({ path, type, stat });
    if (type === 'dir') out.push(...(await walk(root, path)));
  }
  return out;
}

async function smallContext(name: string): Promise<string> {
  const root = join(tmp.path, name);
  await mkdir(join(root, 'src'), { recursive: true });
  await writeFile(join(root, 'src', 'a.txt'), 'alpha\n');
  await writeFile(join(root, 'src', 'b.txt'), 'beta\n');
  await symlink('a.txt', join(root, 'src', 'link'));
  return root;
}

test('context digest changes with content, mode, symlink target and owner, not with mtime or walk order', async () => {
  const root = await smallContext('small');
  const first = await contextDigest(root, await walk(root));
  assert.equal(first.stats.files, 4);
  assert.equal(first.stats.hashed, 2);
  assert.deepEqual(
    first.files.map((f) => [f.path, f.type]),
    [['src', 'dir'], ['src/a.txt', 'file'], ['src/b.txt', 'file'], ['src/link', 'symlink']],
  );
  assert.equal(first.files[3]!.linkname, 'a.txt');

  const reversed = await contextDigest(root, (await walk(root)).reverse());
  assert.equal(reversed.digest, first.digest, 'order of the input list does not matter');

  const chowned = await contextDigest(root, await walk(root), { owner: { uid: 1000, gid: 1000 } });
  assert.notEqual(chowned.digest, first.digest, '--chown owner is part of the digest');

  const { utimes } = await import('node:fs/promises');
  await utimes(join(root, 'src', 'a.txt'), new Date(1e9), new Date(1e9));
  assert.equal((await contextDigest(root, await walk(root))).digest, first.digest, 'mtime is not part of the digest');

  await chmod(join(root, 'src', 'a.txt'), 0o755);
  const moded = await contextDigest(root, await walk(root));
  assert.notEqual(moded.digest, first.digest, 'mode is part of the digest');

  await writeFile(join(root, 'src', 'b.txt'), 'BETA\n');
  const edited = await contextDigest(root, await walk(root));
  assert.notEqual(edited.digest, moded.digest, 'content is part of the digest');

  const { rm } = await import('node:fs/promises');
  await rm(join(root, 'src', 'link'));
  await symlink('b.txt', join(root, 'src', 'link'));
  assert.notEqual((await contextDigest(root, await walk(root))).digest, edited.digest, 'symlink target is part of the digest');
});

test('the context index makes a second digest of 2,000 unchanged files read no file contents', async () => {
  const root = join(tmp.path, 'big');
  const indexDir = join(tmp.path, 'index');
  for (let d = 0; d < 20; d++) {
    await mkdir(join(root, `d${d}`), { recursive: true });
    await Promise.all(Array.from({ length: 100 }, (_, f) => writeFile(join(root, `d${d}`, `f${f}.txt`), `file ${d}/${f}\n`.repeat(f + 1))));
  }
  // Files written within the racy margin of a hash are re-read next time (see RACY_MARGIN_MS).
  await sleep(RACY_MARGIN_MS + 50);
  const files = await walk(root);
  assert.equal(files.filter((f) => f.type === 'file').length, 2000);

  const { result: cold, reads: coldReads } = await countingReads(root, () => contextDigest(root, files, { indexDir }));
  assert.equal(coldReads, 2000, 'the counter sees every read of a cold digest');
  assert.deepEqual([cold.stats.hashed, cold.stats.reused], [2000, 0]);
  assert.ok(cold.stats.bytesHashed > 0);

  const { result: warm, reads: warmReads } = await countingReads(root, async () => contextDigest(root, await walk(root), { indexDir }));
  assert.equal(warmReads, 0);
  assert.equal(warm.digest, cold.digest);
  assert.deepEqual([warm.stats.hashed, warm.stats.reused, warm.stats.bytesHashed], [0, 2000, 0]);

  // One rewritten file (same size, so only its stat identity tells) is read again; nothing else is.
  await writeFile(join(root, 'd3', 'f7.txt'), `FILE 3/7\n`.repeat(8));
  const { result: changed, reads: changedReads } = await countingReads(root, async () => contextDigest(root, await walk(root), { indexDir }));
  assert.equal(changedReads, 1);
  assert.deepEqual([changed.stats.hashed, changed.stats.reused], [1, 1999]);
  assert.notEqual(changed.digest, cold.digest);
});

test('an index entry recorded right after a write is not trusted (racily clean)', async () => {
  const root = join(tmp.path, 'racy');
  await mkdir(root);
  await writeFile(join(root, 'f'), 'one');
  const index = ContextHashIndex.empty(60_000);
  await contextDigest(root, await walk(root), { index });
  const again = await contextDigest(root, await walk(root), { index });
  assert.deepEqual([again.stats.hashed, again.stats.reused], [1, 0]);
});

test('a corrupt index file is ignored and replaced', async () => {
  const root = await smallContext('corrupt');
  const indexDir = join(tmp.path, 'corrupt-index');
  await mkdir(indexDir);
  await writeFile(ContextHashIndex.fileFor(indexDir, root), '{not json');
  const r = await contextDigest(root, await walk(root), { indexDir });
  assert.equal(r.stats.hashed, 2);
  const loaded = await ContextHashIndex.load(ContextHashIndex.fileFor(indexDir, root));
  assert.equal(loaded.size, 2);
});
