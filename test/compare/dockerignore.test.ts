/**
 * `.dockerignore` on a generated ~2,000-file, node-style context (src/**, node_modules/**, test
 * directories at several depths, README.md files everywhere), copied whole with `COPY . /ctx/`.
 * The files in the image must be exactly the set Docker's documented rules give, computed here
 * rule by rule (not with gantry's matcher), and the tree must match what buildah builds.
 *
 * Docker's rules (docs.docker.com/build/concepts/context/#dockerignore-files): patterns are
 * relative to the context root and use Go's filepath.Match plus `**` for any number of
 * directories; a pattern excludes a path when it matches the path or one of its parent
 * directories; `!` re-includes; when several patterns match, the last one wins.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { busyboxBase } from '../../src/testing/bases.js';
import { assertSameTree, type TreeEntry } from '../../src/testing/tree.js';
import { buildBoth, comparisonDir, writeContext, type ComparedBuild, type FileSpec } from './support.js';

const DOCKERIGNORE = `# dependencies are installed in the image, not copied
node_modules
**/test
*.log
*.md
docs/**/*.secret
!README.md
!node_modules/keep/**
`;

/** The context: every path with its content, in a deterministic order. */
function generateContext(): Record<string, FileSpec> {
  const files: Record<string, FileSpec> = {
    Dockerfile: 'ARG BASE\nFROM ${BASE}\nCOPY . /ctx/\n',
    '.dockerignore': DOCKERIGNORE,
    'README.md': '# app\n',
    'CHANGELOG.md': 'changes\n',
    'package.json': '{"name":"app"}\n',
    'app.log': 'log\n',
    'server.js': 'require("./src/mod0")\n',
  };
  const put = (path: string) => {
    files[path] = `${path}\n`;
  };
  for (let t = 0; t < 20; t++) put(`test/unit-${t}.test.js`);
  put('test/README.md');
  put('test/fixtures/deep/data.json');
  for (let m = 0; m < 41; m++) {
    const d = `src/mod${m}`;
    for (const f of ['index.js', 'util.js', 'README.md', 'notes.log', 'test/a.test.js', 'test/b.test.js', 'test/README.md', 'lib/x.js', 'lib/deep/y.js', 'lib/deep/test/z.test.js', 'lib/deep/README.md', 'lib/testing.js', 'lib/test.js/keep.txt'])
      put(`${d}/${f}`);
  }
  for (let p = 0; p < 120; p++) {
    const d = `node_modules/pkg${p}`;
    for (const f of ['index.js', 'package.json', 'README.md', 'lib/a.js', 'lib/b.js', 'lib/nested/c.js', 'test/t.js', 'test/README.md', 'CHANGELOG.md', 'LICENSE']) put(`${d}/${f}`);
  }
  for (let k = 0; k < 10; k++) {
    for (const f of [`k${k}.js`, `test/k${k}.test.js`, `lib/k${k}.md`]) put(`node_modules/keep/${f}`);
  }
  for (let s = 0; s < 30; s++) {
    for (const f of [`guide-${s}.md`, `part-${s}/notes.txt`, `part-${s}/key.secret`, `part-${s}/deeper/more.secret`, `part-${s}/test/example.txt`, `part-${s}/README.md`, `part-${s}/deeper/README.md`])
      put(`docs/${f}`);
  }
  put('docs/top.secret');
  put('docs/secret.txt');
  return files;
}

/**
 * Whether Docker leaves `rel` (a file path relative to the context) out, applying the rules of
 * DOCKERIGNORE one by one in order, the last matching one deciding. `parts` are the path's
 * components; a rule "matches a parent" when it matches one of the path's leading components.
 */
function dockerExcludes(rel: string): boolean {
  const parts = rel.split('/');
  const name = parts[parts.length - 1]!;
  let excluded = false;
  // `node_modules`: no wildcard, so only the root entry of that name, or anything below it.
  if (parts[0] === 'node_modules') excluded = true;
  // `**/test`: an entry named exactly `test` at any depth, or anything below one (not `testing.js`, not `test.js/`).
  if (parts.includes('test')) excluded = true;
  // `*.log`: `*` does not cross `/`, so only root-level names ending in .log (or below such a root directory).
  if (parts[0]!.endsWith('.log')) excluded = true;
  // `*.md`: likewise, root-level only.
  if (parts[0]!.endsWith('.md')) excluded = true;
  // `docs/**/*.secret`: under docs/, at any depth (`**` may be zero directories).
  if (parts[0] === 'docs' && parts.length >= 2 && name.endsWith('.secret')) excluded = true;
  // `!README.md`: re-includes the root README.md only.
  if (rel === 'README.md') excluded = false;
  // `!node_modules/keep/**`: re-includes everything below node_modules/keep, test dirs included (it comes last).
  if (parts[0] === 'node_modules' && parts[1] === 'keep' && parts.length > 2) excluded = false;
  return excluded;
}

const filesUnder = (tree: readonly TreeEntry[], dir: string) =>
  tree.filter((e) => e.type !== 'directory' && e.path.startsWith(`${dir}/`)).map((e) => e.path.slice(dir.length + 1)).sort();

describe('.dockerignore on a 2,000-file node-style context', () => {
  const context = generateContext();
  const expected = Object.keys(context).filter((p) => !dockerExcludes(p)).sort();
  let dirs: Awaited<ReturnType<typeof comparisonDir>>;
  let built: ComparedBuild;
  before(async () => {
    const base = await busyboxBase();
    dirs = await comparisonDir('compare-dockerignore');
    await writeContext(dirs.ctx, context);
    built = await buildBoth({ contextDir: dirs.ctx, outDir: dirs.root, base: { name: 'busybox', image: base } });
  });
  after(async () => {
    await dirs?.cleanup();
  });

  it('the context is big and the rules cut it substantially (the test has teeth)', () => {
    assert.ok(Object.keys(context).length >= 2000, `${Object.keys(context).length} files`);
    assert.ok(expected.length > 300 && expected.length < Object.keys(context).length - 1000, `${expected.length} expected`);
    // Each rule decides at least one file, so none of them can be silently ignored.
    for (const probe of ['node_modules/pkg1/index.js', 'src/mod1/lib/deep/test/z.test.js', 'app.log', 'CHANGELOG.md', 'docs/part-1/deeper/more.secret', 'docs/top.secret'])
      assert.ok(!expected.includes(probe), `${probe} is excluded`);
    for (const probe of ['README.md', 'node_modules/keep/test/k1.test.js', 'src/mod1/README.md', 'src/mod1/notes.log', 'src/mod1/lib/testing.js', 'src/mod1/lib/test.js/keep.txt', 'docs/secret.txt'])
      assert.ok(expected.includes(probe), `${probe} is included`);
  });

  it("gantry's image has exactly Docker's file set", () => {
    assert.deepEqual(filesUnder(built.gantry, '/ctx'), expected);
  });

  it("buildah's image has exactly Docker's file set", () => {
    assert.deepEqual(filesUnder(built.buildah, '/ctx'), expected);
  });

  it('the whole tree matches buildah', () => {
    assertSameTree(built.gantry, built.buildah, { names: ['gantry', 'buildah'], limit: 50 });
  });
});
