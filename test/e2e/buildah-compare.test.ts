/**
 * The same Dockerfile built by gantry and by buildah (Debian's package, chroot isolation, no
 * registry) must give the same file tree: types, modes, owners, contents, link targets.
 */
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { build } from '../../src/build/index.js';
import { buildahBuild } from '../../src/testing/buildah.js';
import { assertSameTree, imageTree, type TreeEntry } from '../../src/testing/tree.js';
import { tempDir, type TempDir } from '../../src/testing/tmp.js';
import { writeTree, type FileSpec } from './support.js';

const CONTEXT: Record<string, FileSpec> = {
  'app/bin/run.sh': { content: '#!/bin/sh\necho run\n', mode: 0o755 },
  'app/etc/conf': 'key=value\n',
  'app/lib/link': { symlink: '../etc/conf' },
  'app/private': { content: 'secret\n', mode: 0o600 },
  'docs/a.md': '# a\n',
  'docs/b.md': '# b\n',
  'docs/c.txt': 'c\n',
  'top.txt': 'top\n',
  '.dockerignore': 'docs/c.txt\n',
};

/**
 * A directory COPY --chmod creates on the way gets the --chmod mode in BuildKit
 * (tonistiigi/fsutil#228 for moby/buildkit#4945; moby/buildkit#5943), 0755 in buildah 1.28:
 * `/modes` below is exactly that and nothing else.
 */
const chmodParentDeparture = (path: string, g: TreeEntry | undefined, b: TreeEntry | undefined): boolean =>
  path === '/modes' && g !== undefined && b !== undefined && g.mode === 0o700 && b.mode === 0o755 && JSON.stringify({ ...g, mode: 0 }) === JSON.stringify({ ...b, mode: 0 });

const cases: Array<{ name: string; dockerfile: string; ignore?: typeof chmodParentDeparture }> = [
  {
    name: 'directories, wildcards, destinations',
    dockerfile: ['FROM scratch', 'COPY app /srv/app', 'COPY docs/*.md /docs/', 'COPY top.txt /top', 'WORKDIR /work', 'COPY top.txt .', 'COPY app/etc /srv/etc-copy/', ''].join('\n'),
  },
  {
    name: 'ownership and modes',
    dockerfile: ['FROM scratch', 'COPY --chown=1234:5678 app /owned/', 'COPY --chmod=700 top.txt /modes/top', ''].join('\n'),
    ignore: chmodParentDeparture,
  },
  {
    name: 'multi-stage',
    dockerfile: ['FROM scratch AS one', 'COPY app /a', 'FROM scratch', 'COPY --from=one /a/etc /from-one', 'COPY . /ctx/', 'COPY . /ctx-no-slash', ''].join('\n'),
  },
];

describe('gantry and buildah build the same file tree', () => {
  let tmp: TempDir;
  before(async () => {
    tmp = await tempDir('e2e-buildah');
  });
  after(() => tmp.cleanup());

  cases.forEach((c, i) => {
    it(c.name, async () => {
      const ctx = join(tmp.path, `ctx-${i}`);
      await writeTree(ctx, { Dockerfile: c.dockerfile, ...CONTEXT });
      const ours = join(tmp.path, `ours-${i}`);
      await build({ context: ctx, ociLayoutPath: ours, workDir: tmp.path, env: {} });
      const theirs = await buildahBuild({ contextDir: ctx, timeoutMs: 120_000 });
      try {
        assertSameTree(await imageTree(ours, 'latest'), await imageTree(theirs.ociDir, theirs.tag), { names: ['gantry', 'buildah'], hardlinksAsFiles: true, ...(c.ignore ? { ignore: c.ignore } : {}) });
      } finally {
        await theirs.cleanup();
      }
    });
  });
});
