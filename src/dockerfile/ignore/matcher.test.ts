import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IgnoreMatcher, cleanPath, loadDockerignore, parseDockerignore } from './index.js';

test('cleanPath behaves like Go path.Clean', () => {
  const cases: Array<[string, string]> = [
    ['', '.'],
    ['docs/', 'docs'],
    ['**/', '**'],
    ['./node_modules', 'node_modules'],
    ['a//b/./c/..', 'a/b'],
    ['/../x', '/x'],
    ['../../x', '../../x'],
    ['src/a/b/../../main.ts', 'src/main.ts'],
    ['/', '/'],
  ];
  for (const [input, want] of cases) assert.equal(cleanPath(input), want, input);
});

test('parseDockerignore handles BOM, CRLF, comments and leading slashes', () => {
  const text = '\uFEFF# comment\r\n/build\r\n  secret.key  \r\n\r\n!  /docs/keep.md \r\n #not a comment\r\n';
  assert.deepEqual(parseDockerignore(text), ['build', 'secret.key', '!docs/keep.md', '#not a comment']);
});

// Docker results measured with the docker CLI (deps.md §2) over a small context.
const CONTEXT = [
  'README.md', 'CHANGELOG.md', 'docs/a.md', 'docs/keep.md', 'docs/sub/b.md', 'src/a/b/deep.ts', 'src/a/b/deep.md',
  'node_modules/x/index.js', '.git/HEAD', 'build/out.bin', 'foo bar.txt', '.env', 'secret.key', 'logs',
];
const DOCKER_CASES: Array<{ name: string; patterns: string[]; excluded: string[] }> = [
  { name: 'root-level *.md only', patterns: ['*.md'], excluded: ['README.md', 'CHANGELOG.md'] },
  { name: 'exception under excluded dir', patterns: ['docs', '!docs/keep.md'], excluded: ['docs/a.md', 'docs/sub/b.md'] },
  { name: 'last match wins', patterns: ['*', '!*.md', 'README.md'], excluded: CONTEXT.filter((p) => p !== 'CHANGELOG.md') },
  { name: 'order matters', patterns: ['!README.md', '*.md'], excluded: ['README.md', 'CHANGELOG.md'] },
  { name: 'case sensitive', patterns: ['readme.md', 'DOCS'], excluded: [] },
  { name: 'trailing slash on a file name', patterns: ['logs/'], excluded: ['logs'] },
  { name: 'everything under any a/', patterns: ['**/a/**'], excluded: ['src/a/b/deep.ts', 'src/a/b/deep.md'] },
  { name: 'char class and ?', patterns: ['foo?bar.txt', '[A-C]*.md'], excluded: ['foo bar.txt', 'CHANGELOG.md'] },
];

test('matcher reproduces docker CLI results on a small context', () => {
  for (const c of DOCKER_CASES) {
    const m = new IgnoreMatcher(c.patterns);
    const got = CONTEXT.filter((p) => m.matches(p));
    assert.deepEqual(got.sort(), [...c.excluded].sort(), c.name);
  }
});

test('canSkipDirectory only when no exception can re-include below', () => {
  const cases: Array<{ patterns: string[]; dir: string; skip: boolean }> = [
    { patterns: ['node_modules'], dir: 'node_modules', skip: true },
    { patterns: ['node_modules', '!node_modules/x/index.js'], dir: 'node_modules', skip: false },
    { patterns: ['node_modules', '!docs'], dir: 'node_modules', skip: true },
    { patterns: ['**/test', '!README.md'], dir: 'a/test', skip: true },
    { patterns: ['**/test', '!**/README.md'], dir: 'a/test', skip: false },
    { patterns: ['*', '!src/a'], dir: 'src', skip: false },
    { patterns: ['*', '!src/a'], dir: 'docs', skip: true },
    { patterns: ['*', '!s*/a'], dir: 'src', skip: false },
    { patterns: ['docs'], dir: 'src', skip: false },
  ];
  for (const c of cases) {
    assert.equal(new IgnoreMatcher(c.patterns).canSkipDirectory(c.dir), c.skip, `${JSON.stringify(c.patterns)} ${c.dir}`);
  }
});

test('invalid patterns are DOCKERIGNORE_INVALID errors with a hint', () => {
  for (const p of ['!', '[', 'a[', '[]a]', '[x-]']) {
    assert.throws(() => new IgnoreMatcher([p]), (e: any) => e.code === 'DOCKERIGNORE_INVALID' && !!e.hint, p);
  }
});

test('loadDockerignore prefers <Dockerfile>.dockerignore next to the Dockerfile', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'gantry-ignore-'));
  try {
    await writeFile(join(dir, '.dockerignore'), 'ctx-pattern\n');
    await mkdir(join(dir, 'build'));
    await writeFile(join(dir, 'build', 'app.Dockerfile'), 'FROM scratch\n');
    await writeFile(join(dir, 'build', 'app.Dockerfile.dockerignore'), 'own-pattern\n');
    const own = await loadDockerignore({ contextDir: dir, dockerfile: join(dir, 'build', 'app.Dockerfile') });
    assert.deepEqual(own.patterns, ['own-pattern']);
    assert.equal(own.file, join(dir, 'build', 'app.Dockerfile.dockerignore'));
    const ctx = await loadDockerignore({ contextDir: dir, dockerfile: join(dir, 'Dockerfile') });
    assert.deepEqual(ctx.patterns, ['ctx-pattern']);
    await writeFile(join(dir, '.dockerignore'), '!\n');
    await assert.rejects(loadDockerignore({ contextDir: dir }), (e: any) => e.code === 'DOCKERIGNORE_INVALID' && e.message.includes('.dockerignore'));
    await rm(join(dir, '.dockerignore'));
    assert.deepEqual((await loadDockerignore({ contextDir: dir })).patterns, []);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
