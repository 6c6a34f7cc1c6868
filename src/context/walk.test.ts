import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { conformanceDir } from '../testing/paths.js';
import { IgnoreMatcher, loadDockerignore } from '../dockerfile/ignore/index.js';
import { walkContext, type WalkEntry } from './walk.js';

const casesFile = join(conformanceDir, 'dockerignore', 'context-cases.json');
const have = existsSync(casesFile);

async function withTemp<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'gantry-walk-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function collect(it: AsyncIterable<WalkEntry>): Promise<WalkEntry[]> {
  const out: WalkEntry[] = [];
  for await (const e of it) out.push(e);
  return out;
}

interface WalkCase {
  id: string;
  tree: Array<{ path: string; type: 'file' | 'dir' }>;
  excludePatterns: string[];
  expectedWalk?: string[];
  mustExist?: string[];
  mustNotExist?: string[];
  expectError?: boolean;
}

test('walk: every fsutil walk case', { skip: !have && 'no conformance data' }, async () => {
  const data = JSON.parse(readFileSync(casesFile, 'utf8')) as { walkCases: WalkCase[] };
  let passed = 0;
  for (const c of data.walkCases) {
    await withTemp(async (dir) => {
      for (const e of c.tree) {
        if (e.type === 'dir') await mkdir(join(dir, e.path), { mode: 0o700 });
        else await writeFile(join(dir, e.path), '', { mode: 0o644 });
      }
      if (c.expectError) {
        assert.throws(() => new IgnoreMatcher(c.excludePatterns), { code: 'DOCKERIGNORE_INVALID' }, c.id);
        passed++;
        return;
      }
      const entries = await collect(walkContext(dir, new IgnoreMatcher(c.excludePatterns)));
      const lines = entries.map((e) => `${e.type} ${e.path}`);
      if (c.expectedWalk) assert.deepEqual(lines, c.expectedWalk, c.id);
      const paths = new Set(entries.map((e) => e.path));
      for (const p of c.mustExist ?? []) assert.ok(paths.has(p), `${c.id}: ${p} must exist`);
      for (const p of c.mustNotExist ?? []) assert.ok(!paths.has(p), `${c.id}: ${p} must not exist`);
      passed++;
    });
  }
  console.log(`dockerignore: ${passed}/${data.walkCases.length} walk cases`);
  assert.equal(passed, data.walkCases.length);
});

interface BuildCase {
  id: string;
  context: Record<string, string> | string;
  dockerfile: string;
  expectFiles?: Record<string, string>;
  expectAbsent?: string[];
  expectBuildError?: boolean;
}

// The file-set part of BuildKit's .dockerignore build cases: which context files COPY . sees.
// build-03/04 assert it with a RUN in busybox; here the same facts are checked on the file set.
const RUN_FACTS: Record<string, { present: string[]; absent: string[] }> = {
  'build-03': { present: ['foo'], absent: ['bar'] },
  'build-04': { present: ['bar'], absent: ['foo'] },
};

test('walk: file sets of the BuildKit .dockerignore build cases', { skip: !have && 'no conformance data' }, async () => {
  const data = JSON.parse(readFileSync(casesFile, 'utf8')) as { buildCases: BuildCase[] };
  const contexts = new Map<string, Record<string, string>>();
  let checked = 0;
  for (const c of data.buildCases) {
    const ctx = typeof c.context === 'string' ? contexts.get(data.buildCases.find((b) => c.context === `same as ${b.id}`)?.id ?? '') : c.context;
    assert.ok(ctx, `${c.id}: context`);
    contexts.set(c.id, ctx);
    await withTemp(async (dir) => {
      for (const [name, content] of Object.entries(ctx)) {
        await mkdir(dirname(join(dir, name)), { recursive: true });
        await writeFile(join(dir, name), content);
      }
      const load = loadDockerignore({ contextDir: dir, dockerfile: join(dir, c.dockerfile) });
      if (c.expectBuildError) {
        await assert.rejects(load, { code: 'DOCKERIGNORE_INVALID' }, c.id);
        checked++;
        return;
      }
      const { matcher } = await load;
      const files = new Map<string, string>();
      for await (const e of walkContext(dir, matcher)) if (e.type === 'file') files.set(e.path, readFileSync(join(dir, e.path), 'utf8'));
      for (const [name, content] of Object.entries(c.expectFiles ?? {})) assert.equal(files.get(name), content, `${c.id}: ${name}`);
      for (const name of c.expectAbsent ?? []) assert.ok(!files.has(name), `${c.id}: ${name} must be absent`);
      const facts = RUN_FACTS[c.id];
      for (const name of facts?.present ?? []) assert.ok(files.has(name), `${c.id}: ${name} present`);
      for (const name of facts?.absent ?? []) assert.ok(!files.has(name), `${c.id}: ${name} absent`);
      // The builder still reads the Dockerfile itself, whatever the ignore file says.
      assert.ok(existsSync(join(dir, c.dockerfile)));
      checked++;
    });
  }
  console.log(`dockerignore: ${checked}/${data.buildCases.length} build cases (file sets only)`);
  assert.equal(checked, data.buildCases.length);
});

test('walk: lexical order, symlinks not followed, excluded dirs emitted only for re-included content', async () => {
  await withTemp(async (dir) => {
    await mkdir(join(dir, 'b/inner'), { recursive: true });
    await mkdir(join(dir, 'a'));
    await mkdir(join(dir, 'skipme/deep'), { recursive: true });
    await writeFile(join(dir, 'b/inner/keep.txt'), 'k');
    await writeFile(join(dir, 'b/drop.txt'), 'd');
    await writeFile(join(dir, 'skipme/deep/x'), 'x');
    await writeFile(join(dir, 'Z'), '');
    await symlink('b', join(dir, 'link'));
    const pruned: string[] = [];
    const m = new IgnoreMatcher(['b', '!b/inner/keep.txt', 'skipme']);
    const lines = (await collect(walkContext(dir, m, { onPrune: (p) => pruned.push(p) }))).map((e) => `${e.type} ${e.path}`);
    assert.deepEqual(lines, ['file Z', 'dir a', 'dir b', 'dir b/inner', 'file b/inner/keep.txt', 'symlink link']);
    assert.deepEqual(pruned, ['skipme']);
    const all = (await collect(walkContext(dir))).map((e) => e.path);
    assert.deepEqual(all, ['Z', 'a', 'b', 'b/drop.txt', 'b/inner', 'b/inner/keep.txt', 'link', 'skipme', 'skipme/deep', 'skipme/deep/x']);
  });
});

test('walk: a missing or non-directory context is CONTEXT_INVALID', async () => {
  await withTemp(async (dir) => {
    await writeFile(join(dir, 'f'), '');
    await assert.rejects(collect(walkContext(join(dir, 'f'))), { code: 'CONTEXT_INVALID' });
    await assert.rejects(collect(walkContext(join(dir, 'missing'))), { code: 'CONTEXT_INVALID' });
  });
});

test('walk: 2,000-file context with **/test and !README.md', async () => {
  await withTemp(async (dir) => {
    // 10 top dirs x 10 subdirs x 20 files; every third subdir is named "test", some files too.
    const files = new Set<string>();
    for (let a = 0; a < 10; a++) {
      for (let b = 0; b < 10; b++) {
        const sub = b % 3 === 0 ? `d${a}/test` + (b === 0 ? '' : `${b}/test`) : `d${a}/s${b}`;
        for (let f = 0; f < 20; f++) {
          const name = f === 0 ? 'README.md' : f === 1 && a % 2 === 0 ? 'test' : `f${f}.txt`;
          files.add(`${sub}/${name}`);
        }
      }
    }
    const all = [...files];
    await Promise.all([...new Set(all.map((p) => dirname(p)))].map((d) => mkdir(join(dir, d), { recursive: true })));
    await Promise.all(all.map((p) => writeFile(join(dir, p), p)));
    await writeFile(join(dir, 'README.md'), 'root');
    all.push('README.md');
    assert.ok(all.length >= 1900, `generated ${all.length} files`);

    // Independent expectation: a path is excluded iff one of its segments is exactly "test";
    // `!README.md` only concerns the root README.md, which nothing excludes.
    const expected = all.filter((p) => !p.split('/').includes('test')).sort();
    const pruned: string[] = [];
    const got = (await collect(walkContext(dir, new IgnoreMatcher(['**/test', '!README.md']), { onPrune: (p) => pruned.push(p) })))
      .filter((e) => e.type === 'file')
      .map((e) => e.path)
      .sort();
    assert.deepEqual(got, expected);
    assert.ok(pruned.length > 0 && pruned.every((p) => p.endsWith('test')), 'test directories are pruned, not read');

    // With an exception that may apply below, nothing is pruned and the answer is the same as
    // matching every path without a walk.
    const m2 = new IgnoreMatcher(['**/test', '!**/README.md']);
    const pruned2: string[] = [];
    const got2 = (await collect(walkContext(dir, m2, { onPrune: (p) => pruned2.push(p) }))).filter((e) => e.type === 'file').map((e) => e.path).sort();
    const expected2 = all.filter((p) => !p.split('/').includes('test') || p.endsWith('/README.md')).sort();
    assert.deepEqual(got2, expected2);
    assert.deepEqual(pruned2, []);
  });
});

test('walk: pruning never changes the result (randomised patterns against brute force)', async () => {
  await withTemp(async (dir) => {
    const files = ['a/b/c.txt', 'a/b/d.md', 'a/x.md', 'a/test/t.txt', 'b/a/c.txt', 'b/keep', 'c.md', 'test/a/b.txt', 'test/README.md', 'vendor/lib/x.go', 'vendor/y.go'];
    for (const f of files) {
      await mkdir(dirname(join(dir, f)), { recursive: true });
      await writeFile(join(dir, f), f);
    }
    const dirs = [...new Set(files.flatMap((f) => f.split('/').slice(0, -1).map((_, i, segs) => segs.slice(0, i + 1).join('/'))))];
    const pool = ['a', 'b', '*', '**', '**/test', 'a/**', '*.md', '**/*.md', 'vendor', 'test', 'a/b', '*/a', 'b/*', '**/b', '?', 'a/b/c.txt', 'vendor/lib', '**/c.txt', 'test/README.md', 'b/keep', 'a/*/t.txt'];
    let seed = 42;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return Math.floor(seed / 65536) % n;
    };
    for (let round = 0; round < 200; round++) {
      const patterns = Array.from({ length: 1 + rnd(4) }, () => (rnd(3) === 0 ? '!' : '') + pool[rnd(pool.length)]!);
      if (patterns.every((p) => p.startsWith('!'))) continue;
      const m = new IgnoreMatcher(patterns);
      const walked = (await collect(walkContext(dir, m))).map((e) => e.path);
      // Brute force: an entry is in when not excluded, and so is every ancestor of an entry that is in.
      const direct = [...files, ...dirs].filter((p) => !m.matches(p));
      const expected = new Set(direct.flatMap((p) => p.split('/').map((_, i, segs) => segs.slice(0, i + 1).join('/'))));
      assert.deepEqual([...walked].sort(), [...expected].sort(), JSON.stringify(patterns));
    }
  });
});
