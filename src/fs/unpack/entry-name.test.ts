import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GantryError } from '../../util/errors.js';
import { classifyWhiteout, normalizeEntryName } from './entry-name.js';

test('entry names normalise to components under the root', () => {
  const cases: Array<[string, string[]]> = [
    ['a', ['a']],
    ['./a', ['a']],
    ['a/', ['a']],
    ['/a', ['a']],
    ['//a//b/./c/', ['a', 'b', 'c']],
    ['a/../b', ['b']],
    ['./', []],
    ['/', []],
    ['a/..', []],
  ];
  for (const [name, want] of cases) assert.deepEqual(normalizeEntryName(name), want, name);
});

test('entry names that climb above the root or cannot exist are refused', () => {
  const cases: Array<[string, string]> = [
    ['..', 'UNSAFE_PATH'],
    ['../evil', 'UNSAFE_PATH'],
    ['/abs/../../evil', 'UNSAFE_PATH'],
    ['a/../../evil', 'UNSAFE_PATH'],
    ['./../x', 'UNSAFE_PATH'],
    ['a\0b', 'ARCHIVE_INVALID'],
    ['x'.repeat(256), 'ARCHIVE_INVALID'],
  ];
  for (const [name, code] of cases) {
    assert.throws(() => normalizeEntryName(name), (err: unknown) => err instanceof GantryError && err.code === code, name);
  }
});

test('whiteout names are classified by their last component', () => {
  const cases: Array<[string[], ReturnType<typeof classifyWhiteout>]> = [
    [['a', 'b'], { kind: 'none' }],
    [[], { kind: 'none' }],
    [['a', '.wh.b'], { kind: 'whiteout', target: 'b' }],
    [['.wh..hidden'], { kind: 'whiteout', target: '.hidden' }],
    [['a', '.wh..wh..opq'], { kind: 'opaque' }],
    [['.wh..wh.aufs'], { kind: 'meta' }],
    [['.wh..wh.plnk', '1234.56'], { kind: 'meta' }],
    [['a', 'x.wh.b'], { kind: 'none' }],
  ];
  for (const [comps, want] of cases) assert.deepEqual(classifyWhiteout(comps), want, comps.join('/'));
  assert.throws(() => classifyWhiteout(['.wh.']), (err: unknown) => err instanceof GantryError && err.code === 'ARCHIVE_INVALID');
});
