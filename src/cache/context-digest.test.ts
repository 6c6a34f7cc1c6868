import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, lstat, mkdir, readdir, readFile, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import type { Stats } from 'node:fs';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { tempDir, type TempDir } from '../testing/tmp.js';
import { contextDigest, ContextHashIndex, RACY_MARGIN_MS, type ContextFile } from './context-digest.js';
import { FramedHash } from './framing.js';

let tmp: TempDir;
before(async () => {
  tmp = await tempDir('cache-ctx');
});
after(async () => {
  await tmp?.cleanup();
});

const fsCjs = createRequire(import.meta.url)('node:fs') as typeof import('node:fs');

/**
 * Counts file opens for reading under `root` while `fn` runs (the real reads, not our own stats):
 * small files are read with openSync, large ones streamed.
 */
async function countingReads<T>(root: string, fn: () => Promise<T>): Promise<{ result: T; reads: number }> {
  const stream = fsCjs.createReadStream;
  const open = fsCjs.openSync;
  let reads = 0;
  const count = (path: unknown) => {
    if (String(path).startsWith(root)) reads++;
  };
  fsCjs.createReadStream = ((path: Parameters<typeof stream>[0], opts?: Parameters<typeof stream>[1]) => {
    count(path);
    return stream(path, opts);
  }) as typeof stream;
  fsCjs.openSync = ((...args: Parameters<typeof open>) => {
    count(args[0]);
    return open(...args);
  }) as typeof open;
  syncBuiltinESMExports();
  try {
    return { result: await fn(), reads };
  } finally {
    fsCjs.createReadStream = stream;
    fsCjs.openSync = open;
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

test('an index entry is trusted only once the file is older than its filesystem timestamps can blur', () => {
  const T = 1_700_000_000_000;
  const cases: Array<[what: string, mtimeMs: number, ctimeMs: number, hashedAt: number, trusted: boolean]> = [
    ['whole seconds, hashed 0.5 s later (1-second filesystem)', T, T, T + 500, false],
    ['whole seconds, hashed 1.9 s later (2-second FAT)', T, T, T + 1_900, false],
    ['whole seconds, hashed 2.1 s later', T, T, T + 2_100, true],
    ['sub-second times, hashed 0.5 s later', T + 123.456, T + 123.456, T + 623, true],
    ['sub-second times, hashed 50 ms later', T + 1.5, T + 1.5, T + 51, false],
    ['whole-second mtime from utimes, sub-second ctime, hashed 0.5 s later', T, T + 200.5, T + 700, true],
  ];
  for (const [what, mtimeMs, ctimeMs, hashedAt, trusted] of cases) {
    const index = ContextHashIndex.empty();
    const st = { size: 3, ino: 7, mtimeMs, ctimeMs } as Stats;
    index.record('/ctx/f', st, 'abc', hashedAt);
    assert.equal(index.lookup('/ctx/f', st), trusted ? 'abc' : undefined, what);
  }
});

test('on a filesystem with 1-second timestamps, a same-size edit within the second of the hash is read again', async () => {
  const root = join(tmp.path, 'coarse');
  await mkdir(root);
  const file = join(root, 'f');
  await writeFile(file, 'one\n');
  // A whole second 0.3 to 1.3 s ago: older than RACY_MARGIN_MS, so only the coarse rule catches it.
  const second = Math.floor((Date.now() - 300) / 1000) * 1000;
  // What such a filesystem reports: mtime and ctime cut to the second the write happened in.
  const coarseWalk = async () => {
    await utimes(file, second / 1000, second / 1000);
    return (await walk(root)).map((f) => ({ ...f, stat: Object.create(f.stat, { ctimeMs: { value: second } }) as Stats }));
  };
  const index = ContextHashIndex.empty();
  const first = await contextDigest(root, await coarseWalk(), { index });
  assert.deepEqual([first.stats.hashed, first.stats.reused], [1, 0]);
  await writeFile(file, 'two\n');
  const files = await coarseWalk();
  assert.equal(files[0]!.stat.mtimeMs, second, 'the edit kept the mtime');
  const edited = await contextDigest(root, files, { index });
  assert.deepEqual([edited.stats.hashed, edited.stats.reused], [1, 0]);
  assert.equal(edited.files[0]!.sha256, createHash('sha256').update('two\n').digest('hex'));
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

/** The documented encoding (docs/cache.md), computed the slow, obvious way. */
function referenceDigest(files: Array<{ path: string; type: string; mode: number; uid: number; gid: number; size: number; sha256?: string; linkname?: string }>): string {
  const h = new FramedHash();
  h.value('gantry-context-digest/v1');
  h.list('files', files, (d, hh) => {
    hh.field('path', d.path).field('type', d.type).int('mode', d.mode).int('uid', d.uid).int('gid', d.gid).int('size', d.size);
    hh.field('sha256', d.sha256 ?? '').field('linkname', d.linkname ?? '');
  });
  return `sha256:${h.hex()}`;
}

test('the digest is the framed encoding of every file, so cache keys stay stable (non-ASCII and long names, symlinks, large files)', async () => {
  const root = join(tmp.path, 'encoding');
  await mkdir(join(root, 'dir'), { recursive: true });
  await mkdir(join(root, 'd'.repeat(200)));
  const big = Buffer.alloc(1024 * 1024 + 17, 'z');
  // U+E000 sorts before an astral character in UTF-16 but after it in UTF-8.
  const contents: Record<string, string | Buffer> = { 'plain.txt': 'plain\n', 'ü-名前-😀.txt': 'unicode\n', 'x\uE000': 'e000', 'x😀': 'astral', 'dir/big.bin': big, 'dir/empty': '', [`${'d'.repeat(200)}/${'long'.repeat(50)}`]: 'long' };
  for (const [name, data] of Object.entries(contents)) await writeFile(join(root, name), data);
  await symlink('../plain.txt', join(root, 'dir', 'link'));
  const r = await contextDigest(root, await walk(root), { owner: { uid: 1000, gid: 50 } });
  const byPath = new Map(r.files.map((f) => [f.path, f]));
  for (const [name, data] of Object.entries(contents)) {
    assert.equal(byPath.get(name)?.sha256, createHash('sha256').update(data).digest('hex'), `${name} is hashed whole`);
  }
  assert.equal(byPath.get('dir/link')?.linkname, '../plain.txt');
  const want = [...r.files].sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
  assert.deepEqual(r.files.map((f) => f.path), want.map((f) => f.path), 'files in UTF-8 byte order');
  assert.equal(r.digest, referenceDigest(want));
  assert.equal(r.stats.bytesHashed, big.length + 6 + 8 + 4 + 6 + 4);
});

test('the index never serves a file rewritten with its old size and mtime, nor a large file that changed', async () => {
  const root = join(tmp.path, 'same-mtime');
  await mkdir(root);
  await writeFile(join(root, 'small'), 'one\n');
  await writeFile(join(root, 'large'), Buffer.alloc(400 * 1024, 'a'));
  // Whole seconds, so the rewrite below can put back exactly the same mtime.
  const mtime = new Date(1_700_000_000_000);
  await utimes(join(root, 'small'), mtime, mtime);
  await sleep(RACY_MARGIN_MS + 50);
  const index = ContextHashIndex.empty();
  const cold = await contextDigest(root, await walk(root), { index });
  assert.deepEqual([cold.stats.hashed, cold.stats.reused], [2, 0]);
  const warm = await contextDigest(root, await walk(root), { index });
  assert.deepEqual([warm.stats.hashed, warm.stats.reused], [0, 2], 'the large (streamed) file is indexed too');

  const before = await stat(join(root, 'small'));
  await writeFile(join(root, 'small'), 'two\n');
  await utimes(join(root, 'small'), before.atime, before.mtime);
  const large = await readFile(join(root, 'large'));
  large[1000] = 0x62;
  await writeFile(join(root, 'large'), large);
  const after = await stat(join(root, 'small'));
  assert.deepEqual([after.size, after.mtimeMs], [before.size, before.mtimeMs], 'the rewrite kept size and mtime');
  await sleep(RACY_MARGIN_MS + 50);
  const changed = await contextDigest(root, await walk(root), { index });
  assert.deepEqual([changed.stats.hashed, changed.stats.reused], [2, 0]);
  assert.notEqual(changed.digest, warm.digest);
  const byPath = new Map(changed.files.map((f) => [f.path, f.sha256]));
  assert.equal(byPath.get('small'), createHash('sha256').update('two\n').digest('hex'));
  assert.equal(byPath.get('large'), createHash('sha256').update(large).digest('hex'));
});

test('an index saved while entries are still being recorded stays dirty until those are saved too', async () => {
  const root = join(tmp.path, 'concurrent-save');
  await mkdir(root);
  await writeFile(join(root, 'a'), 'a');
  await writeFile(join(root, 'b'), 'b');
  await sleep(RACY_MARGIN_MS + 50);
  const dir = join(tmp.path, 'concurrent-index');
  const index = await ContextHashIndex.open(dir, root);
  const files = await walk(root);
  await contextDigest(root, files.filter((f) => f.path === 'a'), { index });
  const saving = index.save();
  await contextDigest(root, files.filter((f) => f.path === 'b'), { index });
  await saving;
  assert.equal(index.dirty, true, 'b was recorded after the first save took its snapshot');
  await index.save();
  assert.equal(index.dirty, false);
  assert.equal((await ContextHashIndex.open(dir, root)).size, 2);
});

test('trimDir keeps the most recently used index files and drops stale temp files', async () => {
  const dir = join(tmp.path, 'trim');
  await mkdir(dir);
  const names = Array.from({ length: 5 }, (_, i) => basename(ContextHashIndex.fileFor(dir, `/ctx/${i}`)));
  for (const [i, n] of names.entries()) {
    await writeFile(join(dir, n), '{}');
    const t = new Date(Date.now() - (10 - i) * 3_600_000);
    await utimes(join(dir, n), t, t);
  }
  const tmpOld = `${names[0]}.tmp-1-x`;
  const tmpFresh = `${names[1]}.tmp-2-y`;
  await writeFile(join(dir, tmpOld), '');
  await utimes(join(dir, tmpOld), new Date(Date.now() - 7_200_000), new Date(Date.now() - 7_200_000));
  await writeFile(join(dir, tmpFresh), '');
  await writeFile(join(dir, 'unrelated'), '');
  // Opening marks an index used: the oldest becomes the newest.
  await ContextHashIndex.open(dir, '/ctx/0');
  assert.equal(await ContextHashIndex.trimDir(dir, 3), 3);
  assert.deepEqual((await readdir(dir)).sort(), [names[0]!, names[3]!, names[4]!, tmpFresh, 'unrelated'].sort());
  assert.equal(await ContextHashIndex.trimDir(dir, 3), 0);
  await rm(dir, { recursive: true });
});
