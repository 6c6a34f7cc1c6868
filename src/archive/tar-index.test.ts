import assert from 'node:assert/strict';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, symlink, truncate, appendFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { run } from '../testing/exec.js';
import { tempDir, type TempDir } from '../testing/tmp.js';
import { isGantryError } from '../util/errors.js';
import { cleanTarName, indexTar, type TarIndex } from './tar-index.js';
import { TarWriter } from './tar-writer.js';

/** The data of `name` as read by offset from the indexed file. */
async function member(idx: TarIndex, name: string): Promise<string | undefined> {
  const m = idx.resolve(name);
  if (!m) return undefined;
  if (m.size === 0) return '';
  const chunks: Buffer[] = [];
  for await (const c of createReadStream(idx.path, { start: m.offset, end: m.offset + m.size - 1 })) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString();
}

describe('tar index', () => {
  let tmp: TempDir;
  before(async () => {
    tmp = await tempDir('tar-index');
  });
  after(() => tmp.cleanup());

  const long = `${'d'.repeat(80)}/${'e'.repeat(90)}/file-with-a-long-name.txt`;

  for (const format of ['pax', 'gnu', 'ustar'] as const) {
    test(`members of a ${format} tar from GNU tar are found by name with their data`, async () => {
      const root = join(tmp.path, `src-${format}`);
      await mkdir(join(root, 'dir'), { recursive: true });
      await writeFile(join(root, 'dir', 'a.txt'), 'hello');
      await writeFile(join(root, 'empty'), '');
      await symlink('a.txt', join(root, 'dir', 'link'));
      if (format !== 'ustar') {
        await mkdir(join(root, long, '..'), { recursive: true });
        await writeFile(join(root, long), 'long one');
      }
      const file = join(tmp.path, `${format}.tar`);
      await run('tar', [`--format=${format}`, '-cf', file, '-C', root, '.'], { check: true });
      const idx = await indexTar(file);
      assert.equal(await member(idx, 'dir/a.txt'), 'hello');
      assert.equal(idx.resolve('./dir/link'), idx.resolve('dir/a.txt'), 'symlinks resolve to their target');
      assert.equal(idx.resolve('empty')!.size, 0);
      assert.equal(idx.members.get('dir')!.type, 'dir');
      assert.equal(idx.resolve('dir'), undefined, 'a directory has no data to read');
      if (format !== 'ustar') assert.equal(await member(idx, long), 'long one');
    });
  }

  test('what TarWriter writes (prefix split, PAX names, hard links) is indexed', async () => {
    const file = join(tmp.path, 'own.tar');
    const tar = new TarWriter();
    const written = pipeline(tar, createWriteStream(file));
    const base = { mode: 0o644, uid: 0, gid: 0, mtime: 0 };
    const unicode = `x/${'ü'.repeat(120)}.txt`;
    await tar.add({ ...base, name: 'x/', type: 'dir', mode: 0o755 });
    await tar.add({ ...base, name: 'x/y', type: 'file', size: 3 }, Buffer.from('why'));
    await tar.add({ ...base, name: long, type: 'file', size: 4 }, Buffer.from('long'));
    await tar.add({ ...base, name: unicode, type: 'file', size: 7 }, Buffer.from('unicode'));
    await tar.add({ ...base, name: 'x/hard', type: 'hardlink', linkname: 'x/y' });
    await tar.finish();
    await written;
    const idx = await indexTar(file);
    assert.equal(await member(idx, 'x/y'), 'why');
    assert.equal(await member(idx, long), 'long');
    assert.equal(await member(idx, unicode), 'unicode');
    assert.equal(await member(idx, 'x/hard'), 'why', 'hard links resolve to the file they name');
    assert.deepEqual([...idx.members.keys()], ['x', 'x/y', long, unicode, 'x/hard']);
  });

  test('a global PAX header and a GNU sparse member are passed over, and what follows is found', async () => {
    // A pax option without ':' goes into a global header at the start of the archive.
    const root = join(tmp.path, 'sparse');
    await mkdir(root);
    await writeFile(join(root, 'f'), 'ok');
    const global = join(tmp.path, 'global.tar');
    await run('tar', ['--format=pax', '--pax-option=comment=made-by-a-test', '-cf', global, '-C', root, 'f'], { check: true });
    assert.equal(await member(await indexTar(global), 'f'), 'ok');

    // Data at both ends of 1 MiB: GNU tar stores the two regions under a type-S header.
    await writeFile(join(root, 'holes'), 'a');
    await truncate(join(root, 'holes'), 1 << 20);
    await appendFile(join(root, 'holes'), 'b');
    await writeFile(join(root, 'next'), 'after the sparse file');
    const file = join(tmp.path, 'sparse.tar');
    await run('tar', ['--format=gnu', '--sparse', '-cf', file, '-C', root, 'holes', 'next'], { check: true });
    const idx = await indexTar(file);
    assert.equal(idx.members.get('holes'), undefined, 'a sparse member cannot be read by one byte range, so it is not listed');
    assert.equal(await member(idx, 'next'), 'after the sparse file');
  });

  test('compressed, corrupt and truncated files are refused', async () => {
    const good = join(tmp.path, 'good.tar');
    const tar = new TarWriter();
    const written = pipeline(tar, createWriteStream(good));
    await tar.add({ name: 'data', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 4096 }, Buffer.alloc(4096, 1));
    await tar.finish();
    await written;
    const bytes = await readFile(good);
    const cases: Array<{ name: string; data: Buffer; message: RegExp; hint?: RegExp }> = [
      { name: 'gzip', data: gzipSync(bytes), message: /gzip-compressed/, hint: /gunzip/ },
      { name: 'bzip2', data: Buffer.concat([Buffer.from('BZh91AY&SY'), bytes]), message: /bzip2-compressed/, hint: /bunzip2/ },
      { name: 'junk', data: Buffer.alloc(2048, 7), message: /bad header checksum at offset 0/ },
      { name: 'truncated', data: bytes.subarray(0, 2048), message: /truncated tar \(member data\)/ },
    ];
    for (const c of cases) {
      const file = join(tmp.path, `refused-${c.name}`);
      await writeFile(file, c.data);
      await assert.rejects(indexTar(file), (e) => isGantryError(e, 'ARCHIVE_INVALID') && c.message.test(e.message) && (!c.hint || c.hint.test(e.hint ?? '')), c.name);
    }
  });

  test('member names are cleaned', () => {
    const table: Array<[string, string]> = [
      ['./a/b', 'a/b'],
      ['/a/b/', 'a/b'],
      ['a/./b/../c', 'a/c'],
      ['../../etc/passwd', 'etc/passwd'],
    ];
    for (const [input, want] of table) assert.equal(cleanTarName(input), want, input);
  });
});
