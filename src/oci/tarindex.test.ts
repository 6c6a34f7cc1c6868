import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { run } from '../testing/exec.js';
import { tempDir, type TempDir } from '../testing/tmp.js';
import { isGantryError } from '../util/errors.js';
import { tarBytes } from './tarformat.js';
import { cleanName, indexTar } from './tarindex.js';

async function member(file: string, offset: number, size: number): Promise<string> {
  if (size === 0) return '';
  const chunks: Buffer[] = [];
  for await (const c of createReadStream(file, { start: offset, end: offset + size - 1 })) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString();
}

describe('tar index', () => {
  let tmp: TempDir;
  before(async () => {
    tmp = await tempDir('tarindex');
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
      const a = idx.resolve('dir/a.txt')!;
      assert.equal(await member(file, a.offset, a.size), 'hello');
      assert.equal(idx.resolve('./dir/link'), a, 'symlinks resolve to their target');
      assert.equal(idx.resolve('empty')!.size, 0);
      assert.equal(idx.members.get('dir')!.type, '5');
      if (format !== 'ustar') {
        const l = idx.resolve(long)!;
        assert.equal(await member(file, l.offset, l.size), 'long one');
      }
    });
  }

  test('our own ustar writer reads back, and garbage is refused', async () => {
    const file = join(tmp.path, 'own.tar');
    await writeFile(file, tarBytes([{ name: 'x/', type: 'directory' }, { name: 'x/y', content: 'why' }]));
    const idx = await indexTar(file);
    const y = idx.resolve('x/y')!;
    assert.equal(await member(file, y.offset, y.size), 'why');
    const listed = await run('tar', ['-tvf', file], { check: true });
    assert.match(listed.stdout, /x\/y/);

    const gz = join(tmp.path, 'own.tar.gz');
    await writeFile(gz, gzipSync(tarBytes([{ name: 'x', content: 'y' }])));
    await assert.rejects(indexTar(gz), (e) => isGantryError(e, 'ARCHIVE_INVALID') && /gzip-compressed/.test(e.message) && e.hint !== undefined);

    const junk = join(tmp.path, 'junk.tar');
    await writeFile(junk, Buffer.alloc(2048, 7));
    await assert.rejects(indexTar(junk), (e) => isGantryError(e, 'ARCHIVE_INVALID'));
  });

  test('member names are cleaned', () => {
    const table: Array<[string, string]> = [
      ['./a/b', 'a/b'],
      ['/a/b/', 'a/b'],
      ['a/./b/../c', 'a/c'],
      ['../../etc/passwd', 'etc/passwd'],
    ];
    for (const [input, want] of table) assert.equal(cleanName(input), want, input);
  });
});
