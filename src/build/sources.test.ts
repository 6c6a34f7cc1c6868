import assert from 'node:assert/strict';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { IgnoreMatcher } from '../dockerfile/index.js';
import { byteOrder, cleanSourcePath, compileComponent, matchSource, walkTree, lstatInTree, type SourceTree } from './sources.js';

describe('compileComponent follows Go filepath.Match', () => {
  const cases: Array<[string, string, boolean]> = [
    ['*.txt', 'a.txt', true],
    ['*.txt', '.txt', true],
    ['*.txt', 'a.txt.bak', false],
    ['?.go', 'a.go', true],
    ['?.go', 'ab.go', false],
    ['[abc].md', 'b.md', true],
    ['[a-c].md', 'd.md', false],
    ['[^a-c].md', 'd.md', true],
    ['[^a-c].md', 'a.md', false],
    ['\\*.txt', '*.txt', true],
    ['\\*.txt', 'a.txt', false],
    ['[[]x', '[x', true],
    ['a.b', 'axb', false],
  ];
  for (const [pattern, name, want] of cases) {
    it(`${pattern} ${want ? 'matches' : 'does not match'} ${name}`, () => assert.equal(compileComponent(pattern).test(name), want));
  }
  it('rejects malformed patterns', () => {
    assert.throws(() => compileComponent('[abc'), /syntax error in pattern/);
    assert.throws(() => compileComponent('a\\'), /syntax error in pattern/);
  });
});

describe('cleanSourcePath', () => {
  const cases: Array<[string, string]> = [['.', ''], ['/', ''], ['./a/../b/', 'b'], ['/x/y', 'x/y'], ['../../etc', 'etc']];
  for (const [input, want] of cases) it(`${input} -> "${want}"`, () => assert.equal(cleanSourcePath(input), want));
});

describe('source matching in a tree', () => {
  let dir: string;
  let tree: SourceTree;
  before(async () => {
    dir = join(tmpdir(), `gantry-sources-${process.pid}`);
    await mkdir(join(dir, 'src/lib'), { recursive: true });
    await mkdir(join(dir, 'node_modules/x'), { recursive: true });
    await mkdir(join(dir, 'logs'), { recursive: true });
    for (const f of ['a.txt', 'b.txt', 'c.md', 'src/main.ts', 'src/lib/util.ts', 'node_modules/x/i.js', 'logs/keep.log', 'logs/drop.log']) {
      await writeFile(join(dir, f), f);
    }
    await symlink('src', join(dir, 'srclink'));
    tree = { dir, ignore: new IgnoreMatcher(['node_modules', 'logs', '!logs/keep.log', '*.md']), resetOwners: true, name: 'build context' };
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const cases: Array<[string, string[]]> = [
    ['a.txt', ['a.txt']],
    ['*.txt', ['a.txt', 'b.txt']],
    ['*.md', []],
    ['c.md', []],
    ['missing', []],
    ['src/*.ts', ['src/main.ts']],
    ['*/lib', ['src/lib', 'srclink/lib']], // Glob goes through symlinked directories
    ['srclink/main.ts', ['srclink/main.ts']],
    ['node_modules', []],
    ['.', ['']],
  ];
  for (const [pattern, want] of cases) it(`${pattern} -> ${JSON.stringify(want)}`, async () => assert.deepEqual(await matchSource(tree, pattern), want));

  it('walks a directory with .dockerignore exceptions and --exclude', async () => {
    const root = (await lstatInTree(tree, ''))!;
    const all = (await walkTree(tree, root)).map((e) => e.rel);
    assert.deepEqual(all, ['a.txt', 'b.txt', 'logs', 'logs/keep.log', 'src', 'src/lib', 'src/lib/util.ts', 'src/main.ts', 'srclink']);
    const src = (await lstatInTree(tree, 'src'))!;
    const some = (await walkTree(tree, src, new IgnoreMatcher(['lib']))).map((e) => e.rel);
    assert.deepEqual(some, ['main.ts']);
  });
});

describe('byteOrder sorts names as their UTF-8 bytes do', () => {
  // UTF-16 order and byte order part ways only for astral characters (surrogates) against U+E000..U+FFFF.
  const cases: Array<[string, string, string]> = [
    ['equal', 'a/b', 'a/b'],
    ['ASCII', 'a.js', 'a/b'],
    ['prefix first', 'ab', 'abc'],
    ['case', 'Z', 'a'],
    ['Latin-1 after ASCII', 'z', 'é'],
    ['astral after U+FFFD (unlike UTF-16)', '\uFFFD', '😀'],
    ['astral after U+E000 (unlike UTF-16)', 'x\uE000', 'x😀'],
    ['two astral characters', '😀', '😁'],
    ['BMP below surrogates before astral', '中', '😀'],
  ];
  for (const [name, a, b] of cases) {
    it(name, () => {
      const want = Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b)));
      assert.equal(Math.sign(byteOrder(a, b)), want);
      assert.equal(Math.sign(byteOrder(b, a)), 0 - want);
    });
  }
});
