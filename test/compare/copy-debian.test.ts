/**
 * COPY onto a real distribution: the Debian bookworm base (debootstrap, usrmerge: /bin, /lib and
 * /sbin are symlinks into /usr), pulled from and pushed to a local registry by gantry, built from
 * the cached OCI layout by buildah. Copies into existing directories, over existing files, through
 * symlinked directories and with --chown names from Debian's own /etc/passwd and /etc/group.
 * The first run on a machine debootstraps the base (about 2 minutes); later runs use the cache.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { build } from '../../src/build/index.js';
import { debianBase, pushBase, type BaseImage } from '../../src/testing/bases.js';
import { buildahBuild } from '../../src/testing/buildah.js';
import { run } from '../../src/testing/exec.js';
import { startRegistry, type TestRegistry } from '../../src/testing/registry.js';
import { skopeoRegistryFlags } from '../../src/testing/skopeo.js';
import { assertSameTree, imageTree, type TreeEntry } from '../../src/testing/tree.js';
import { comparisonDir, subtree, writeContext } from './support.js';

const DOCKERFILE = `
ARG BASE
FROM \${BASE}
# into an existing directory: the files join it, the directory keeps its metadata
COPY tools/ /usr/local/bin/
# a new directory under an existing one
COPY app.conf /etc/app/
# user and group names from Debian's /etc/passwd and /etc/group (www-data = 33:33)
COPY --chown=www-data:www-data app.conf /etc/app/owned.conf
# over an existing regular file
COPY motd /etc/motd
# through the usrmerge symlink /bin -> usr/bin: the file lands in /usr/bin, /bin stays a link
COPY hello /bin/hello
COPY hello /sbin/
# a directory's contents through /lib -> usr/lib into a new subdirectory
COPY libdir /lib/gantry-extra
# onto an existing symlink (/etc/os-release -> ../usr/lib/os-release)
COPY os-release /etc/os-release
# a directory's contents into the symlinked directory itself
COPY libdir /lib/
# through an absolute symlink (/var/run -> /run), resolved inside the image's root
COPY app.conf /var/run/app/
`;

const OS_RELEASE = 'PRETTY_NAME="gantry"\n';
const OS_RELEASE_SHA256 = `sha256:${createHash('sha256').update(OS_RELEASE).digest('hex')}`;

/**
 * buildah 1.28 departs from BuildKit on `COPY os-release /etc/os-release` when /etc/os-release
 * is a symlink (to ../usr/lib/os-release): it replaces the link with the file, where BuildKit
 * writes through the link. Only exactly those two shapes are let through.
 */
function copyOntoSymlinkDeparture(baseTree: readonly TreeEntry[]): (path: string, g: TreeEntry | undefined, b: TreeEntry | undefined) => boolean {
  const base = (path: string) => baseTree.find((e) => e.path === path);
  return (path, g, b) => {
    if (!g || !b) return false;
    if (path === '/etc/os-release') return g.type === 'symlink' && g.linkTarget === base(path)?.linkTarget && b.type === 'file' && b.sha256 === OS_RELEASE_SHA256;
    if (path === '/usr/lib/os-release') return g.sha256 === OS_RELEASE_SHA256 && b.sha256 === base(path)?.sha256;
    return false;
  };
}

describe('COPY on Debian bookworm: gantry (via a registry) and buildah build the same tree', () => {
  let base: BaseImage;
  let reg: TestRegistry;
  let dirs: Awaited<ReturnType<typeof comparisonDir>>;
  let gantryTree: TreeEntry[];
  let buildahTree: TreeEntry[];
  let baseTree: TreeEntry[];

  before(async () => {
    base = await debianBase();
    reg = await startRegistry({ kind: 'plain' });
    dirs = await comparisonDir('compare-debian');
    await writeContext(dirs.ctx, {
      Dockerfile: DOCKERFILE,
      'tools/gantry-hello': { content: '#!/bin/sh\necho hello\n', mode: 0o755 },
      'tools/gantry-data': { content: 'data\n', mode: 0o644 },
      'app.conf': 'key=value\n',
      motd: 'replaced motd\n',
      'os-release': OS_RELEASE,
      hello: { content: '#!/bin/sh\necho hi\n', mode: 0o755 },
      'libdir/one.so': { content: 'not really a library\n', mode: 0o644 },
      'libdir/sub/two.so': { content: 'nor this\n', mode: 0o644 },
    });
    const fromRef = await pushBase(base, reg, 'debian:bookworm');
    const dest = `${reg.host}/compare/debian-copy:latest`;
    const result = await build({
      context: dirs.ctx,
      dockerfile: join(dirs.ctx, 'Dockerfile'),
      buildArgs: { BASE: fromRef },
      destinations: [dest],
      registry: { insecure: [reg.host] },
      defaultOutputDir: false,
      workDir: dirs.root,
      env: {},
    });
    assert.deepEqual(result.pushed.map((p) => p.reference), [dest], 'gantry pushed the image');
    // Read the pushed image back the way a user would, with skopeo, into a layout to compare.
    const pulled = join(dirs.root, 'pulled');
    await run('skopeo', ['copy', '--quiet', '--insecure-policy', ...skopeoRegistryFlags(reg, 'src'), `docker://${dest}`, `oci:${pulled}:latest`], {
      check: true,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dirs.root, REGISTRY_AUTH_FILE: join(dirs.root, 'auth.json') },
    });
    const b = await buildahBuild({
      contextDir: dirs.ctx,
      baseImages: { 'debian:bookworm': base.ref },
      buildArgs: { BASE: 'debian:bookworm' },
      outDir: join(dirs.root, 'buildah'),
    });
    gantryTree = await imageTree(pulled, 'latest');
    buildahTree = await imageTree(b.ociDir, b.tag);
    baseTree = await imageTree(base.ociDir, base.tag);
  });
  after(async () => {
    await reg?.stop();
    await dirs?.cleanup();
  });

  it('the whole merged tree matches buildah (explained exceptions only)', () => {
    assertSameTree(gantryTree, buildahTree, { names: ['gantry', 'buildah'], hardlinksAsFiles: true, limit: 100, ignore: copyOntoSymlinkDeparture(baseTree) });
  });

  it('COPY onto an existing symlink writes through it: the link stays, its target gets the content', () => {
    // BuildKit resolves the whole destination inside the root, the last component included
    // (fsutil Copy: fs.RootPath(dstRoot, dst), continuity's RootPath follows every symlink), and
    // then replaces the file found there; moby/buildkit#1260 shows the same for a link in /xyz.
    const at = (path: string) => gantryTree.find((e) => e.path === path);
    assert.deepEqual(at('/etc/os-release'), baseTree.find((e) => e.path === '/etc/os-release'));
    assert.equal(at('/usr/lib/os-release')?.sha256, OS_RELEASE_SHA256);
  });

  it('copies land where BuildKit puts them and the base is otherwise untouched', () => {
    const at = (path: string) => gantryTree.find((e) => e.path === path);
    const was = (path: string) => baseTree.find((e) => e.path === path);
    // The usrmerge links survive; what was copied "into" them is in /usr.
    for (const link of ['/bin', '/sbin', '/lib', '/var/run']) assert.deepEqual(at(link), was(link), `${link} unchanged`);
    assert.equal(at('/usr/bin/hello')?.type, 'file');
    assert.equal(at('/usr/sbin/hello')?.type, 'file');
    assert.equal(at('/usr/lib/gantry-extra/sub/two.so')?.type, 'file');
    assert.equal(at('/run/app/app.conf')?.type, 'file');
    assert.equal(at('/etc/motd')?.size, 'replaced motd\n'.length);
    assert.deepEqual([at('/etc/app/owned.conf')?.uid, at('/etc/app/owned.conf')?.gid], [33, 33]);
    // Existing directories keep their metadata; the base's own files in them are still there.
    assert.deepEqual(at('/usr/local/bin'), was('/usr/local/bin'));
    assert.equal(at('/usr/local/bin/gantry-hello')?.mode, 0o755);
    const before = new Map(baseTree.map((e) => [e.path, e]));
    const added = gantryTree.filter((e) => !before.has(e.path)).map((e) => e.path);
    assert.deepEqual(added, [
      '/etc/app',
      '/etc/app/app.conf',
      '/etc/app/owned.conf',
      '/run/app',
      '/run/app/app.conf',
      '/usr/bin/hello',
      '/usr/lib/gantry-extra',
      '/usr/lib/gantry-extra/one.so',
      '/usr/lib/gantry-extra/sub',
      '/usr/lib/gantry-extra/sub/two.so',
      '/usr/lib/one.so',
      '/usr/lib/sub',
      '/usr/lib/sub/two.so',
      '/usr/local/bin/gantry-data',
      '/usr/local/bin/gantry-hello',
      '/usr/sbin/hello',
    ]);
    assert.equal(subtree(gantryTree, '/etc').length, subtree(baseTree, '/etc').length + 3);
  });
});
