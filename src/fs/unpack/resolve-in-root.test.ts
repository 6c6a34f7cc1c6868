import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { GantryError } from '../../util/errors.js';
import { resolveInRoot } from './resolve-in-root.js';

test('paths resolve through symlinks as if the root were chroot-ed', () => {
  const base = realpathSync(mkdtempSync(join(tmpdir(), 'gantry-resolve-')));
  const root = join(base, 'root');
  try {
    mkdirSync(join(root, 'a', 'b'), { recursive: true });
    writeFileSync(join(root, 'a', 'b', 'file'), '');
    const links: Array<[string, string]> = [
      ['abs', '/a'],
      ['rel', 'a/b'],
      ['up', '../../../../..'],
      ['hostabs', join(root, 'a')],
      ['final', 'a/b/file'],
      ['chain', 'abs'],
      ['dangling', '/nowhere/x'],
      ['loop1', 'loop2'],
      ['loop2', 'loop1'],
      ['self', 'self'],
      ['a/b/toA', '/a'],
      ['a/b/toB', '../b'],
    ];
    for (const [name, target] of links) symlinkSync(target, join(root, name));

    const cases: Array<[string, boolean, string]> = [
      // path, followFinal, expected (relative to root)
      ['a/b/file', true, 'a/b/file'],
      ['/a/b', true, 'a/b'],
      ['abs/b', true, 'a/b'],
      ['rel/file', true, 'a/b/file'],
      ['up/a', true, 'a'],
      ['../../a', true, 'a'],
      ['up/../../etc/passwd', true, 'etc/passwd'],
      [`hostabs/b`, true, `${root.slice(1)}/a/b`],
      ['final', false, 'final'],
      ['final', true, 'a/b/file'],
      ['chain/b', true, 'a/b'],
      ['a/b/toA/b/file', true, 'a/b/file'],
      ['a/b/toB/toB/toA', true, 'a'],
      ['abs/../b', true, 'b'],
      ['missing/x', true, 'missing/x'],
      ['dangling', true, 'nowhere/x'],
      ['dangling', false, 'dangling'],
      ['a/b/file/x', true, 'a/b/file/x'],
      ['/', true, ''],
      ['loop1', false, 'loop1'],
    ];
    for (const [path, followFinal, want] of cases) {
      assert.equal(resolveInRoot(root, path, { followFinal }), join(root, want), `${path} (followFinal=${followFinal})`);
    }

    for (const path of ['loop1/x', 'self', 'a/../loop2/y']) {
      assert.throws(
        () => resolveInRoot(root, path, { followFinal: true }),
        (err: unknown) => err instanceof GantryError && err.code === 'ARCHIVE_INVALID' && err.details.errno === 'ELOOP',
        path,
      );
    }
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});
