/**
 * COPY/ADD on the busybox base, built by gantry and by buildah from the same Dockerfile and
 * context: the two images' merged file trees must be the same, path by path (type, mode, owner,
 * size, content digest, link target), apart from the listed, explained differences where buildah
 * departs from BuildKit (gantry follows BuildKit).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { busyboxBase, type BaseImage } from '../../src/testing/bases.js';
import { assertSameTree, type TreeEntry } from '../../src/testing/tree.js';
import { buildBoth, comparisonDir, writeContext, type ComparedBuild } from './support.js';

/** A gzipped tar with a directory, files of several modes and owners, a symlink and a hardlink. */
async function bundleTarGz(): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => {
    chunks.push(c as Buffer);
  });
  const ended = new Promise<void>((resolve) => pack.on('end', () => resolve()));
  const mtime = new Date(1_500_000_000_000);
  const add = (header: Partial<tar.Header> & { name: string }, body?: string) =>
    new Promise<void>((resolve, reject) => pack.entry({ mtime, uid: 0, gid: 0, ...header }, body ?? '', (e) => (e ? reject(e) : resolve())));
  await add({ name: 'bundle/', type: 'directory', mode: 0o755 });
  await add({ name: 'bundle/readme.txt', mode: 0o644 }, 'read me\n');
  await add({ name: 'bundle/bin/', type: 'directory', mode: 0o750 });
  await add({ name: 'bundle/bin/tool', mode: 0o755 }, '#!/bin/sh\necho tool\n');
  await add({ name: 'bundle/owned.dat', mode: 0o640, uid: 1234, gid: 4321 }, 'owned by 1234:4321\n');
  await add({ name: 'bundle/owned-dir/', type: 'directory', mode: 0o700, uid: 1234, gid: 4321 });
  await add({ name: 'bundle/owned-dir/inner.txt', mode: 0o600, uid: 1234, gid: 4321 }, 'inner\n');
  await add({ name: 'bundle/tool-link', type: 'symlink', linkname: 'bin/tool', mode: 0o777 });
  await add({ name: 'bundle/readme-hardlink', type: 'link', linkname: 'bundle/readme.txt', mode: 0o644 });
  pack.finalize();
  await ended;
  return gzipSync(Buffer.concat(chunks));
}

const DOCKERFILE = `
ARG BASE
FROM \${BASE} AS assets
COPY stage/ /built/
COPY --chmod=0750 stage/tool.sh /built/bin/tool
ADD bundle.tar.gz /built/

FROM \${BASE}
# build arguments expand in COPY sources and destinations
ARG DEST=/default-dest
ARG WHICH
COPY \${WHICH}.txt \${DEST}/
# a directory: its contents are copied, the symlinks inside it stay symlinks
COPY app /app
# several modes, preserved from the context
COPY modes/ /modes/
# an executable into an existing directory (trailing slash)
COPY app/run.sh /usr/bin/
# wildcards: into a directory, and a character class
COPY *.txt /txt/
COPY [ab].txt /class/
# no trailing slash and one source: the destination is the file itself
COPY a.txt /renamed.txt
# several sources: the destination is a directory even without a slash
COPY a.txt b.txt /multi
COPY --chown=1000:1000 owned/ /owned-num/
# a uid alone: the gid is the same number
COPY --chown=1000 a.txt /owned-uid-only/
# the directories a --chown copy creates on the way belong to that user too
COPY --chown=1000:1000 a.txt /chown-parents/p1/p2/
# a trailing slash makes a new directory; a source with a trailing slash is still the directory
COPY a.txt /slash-dir/
COPY app/ /app-slash
# a named symlink is followed: the file it points to is copied
COPY top-link /followed
# a wildcard matching directories copies each one's contents
COPY app/conf* /globbed/
# --chmod on a directory copy applies to the directories as well as the files, and to the
# destination directory the copy creates
COPY --chmod=0750 owned /chmod-dir/
# names resolved from the image's /etc/passwd (daemon = 1:1) and /etc/group (users = 100)
COPY --chown=daemon:users owned/ /owned-name/
# a user alone: the group is the user's primary group from /etc/passwd (nobody = 65534:65534)
COPY --chown=nobody owned/one /home/nobody-file
COPY --chmod=0600 secret.conf /etc/secret.conf
COPY --chown=1000:1000 --chmod=0640 secret.conf /etc/secret-owned.conf
WORKDIR /work/sub
COPY a.txt rel/
COPY b.txt .
COPY --from=assets /built /from-stage
COPY --from=assets /built/bin/tool /usr/local/bin/
# from an image that is not a stage of this Dockerfile (a global ARG needs redeclaring to be seen)
ARG BASE
COPY --from=\${BASE} /etc/passwd /from-image/passwd
# a directory owned by someone else in the stage, to a missing destination
COPY --from=assets /built/bundle/owned-dir /owned-dir-copy
# a wildcard match that is a symlink is followed too
COPY top-l* /wild-follow/
# odd names: spaces, non-ASCII, a path longer than a plain tar header holds
COPY names/ /names/
# a gzip file that is not a tar is copied as it is
ADD notes.txt.gz /notes/
# WORKDIR creates its directory for the current USER
USER daemon
WORKDIR /home/daemon-work
USER root
# a file onto an existing directory without a slash lands inside it
COPY a.txt /tmp
# a tree onto / merges into existing directories, which keep their metadata (/tmp stays 1777)
COPY rootfs/ /
# sources are context-relative even when absolute or not normalized
COPY /b.txt ./sub/../c.txt /normalized/
# hard links between copied files
COPY links/ /links/
# --chown on ADD of an archive owns what it extracts
ADD --chown=1000:1000 bundle.tar.gz /opt/chowned/
# a local tar.gz is extracted; keeps its owners, modes, symlinks and hardlinks
ADD bundle.tar.gz /opt/
ADD bundle.tar.gz /opt/again/
`;

async function context(dir: string): Promise<void> {
  await writeContext(dir, {
    Dockerfile: DOCKERFILE,
    'a.txt': 'A\n',
    'b.txt': 'B\n',
    'c.txt': 'C\n',
    // Source directories with unusual modes: BuildKit creates a missing destination directory
    // 0755 (fsutil's MkdirAll) instead of taking the source directory's mode.
    app: { dir: true, mode: 0o750 },
    owned: { dir: true, mode: 0o700 },
    'app/run.sh': { content: '#!/bin/sh\necho run\n', mode: 0o755 },
    'app/config/app.json': '{"a":1}\n',
    'app/config/empty': { dir: true, mode: 0o700 },
    'app/link-to-run': { symlink: 'run.sh' },
    'app/abs-link': { symlink: '/etc/passwd' },
    'app/dangling': { symlink: 'nowhere' },
    'app/private': { content: 'private\n', mode: 0o600 },
    'modes/ro': { content: 'read only\n', mode: 0o444 },
    'modes/group-exec': { content: 'x\n', mode: 0o750 },
    'modes/setuid': { content: 'suid\n', mode: 0o4755 },
    'modes/sub/deep': { content: 'deep\n', mode: 0o640 },
    'top-link': { symlink: 'a.txt' },
    'names/with space.txt': 'space\n',
    'names/\u00fcn\u00efc\u00f8d\u00e9-\u6587\u4ef6.txt': 'unicode\n',
    [`names/${'long-directory-name-'.repeat(4)}/${'long-file-name-'.repeat(5)}.txt`]: 'long\n',
    'names/empty-file': '',
    'notes.txt.gz': gzipSync(Buffer.from('compressed notes\n')),
    'rootfs/etc/extra.conf': 'extra\n',
    'rootfs/tmp/in-tmp': 'tmp\n',
    'rootfs/srv/new/file': 'new\n',
    'sub/keep': 'keep\n',
    'links/original': 'linked content\n',
    'links/second-name': { hardlink: 'links/original' },
    'owned/one': '1\n',
    'owned/two/three': '3\n',
    'secret.conf': { content: 'password=x\n', mode: 0o644 },
    'stage/tool.sh': { content: '#!/bin/sh\necho stage\n', mode: 0o755 },
    'stage/data/x.bin': Buffer.alloc(70_000, 7),
    'bundle.tar.gz': await bundleTarGz(),
  });
}

/**
 * Where buildah 1.28 departs from BuildKit, and so from gantry. Each rule names exact paths and
 * the exact values on both sides (everything else about the entry must still be equal); any
 * other difference fails the test.
 */
interface Departure {
  why: string;
  /** True when `g`/`b` at `path` are exactly this departure; `buildahTree` for lookups. */
  applies(path: string, g: TreeEntry, b: TreeEntry, buildahTree: readonly TreeEntry[]): boolean;
  /** A path where the departure must be visible, so a stale rule is noticed. */
  witness: string;
}

const sameExcept = (g: TreeEntry, b: TreeEntry, fields: readonly (keyof TreeEntry)[]) => {
  const strip = (e: TreeEntry) => JSON.stringify(Object.entries(e).filter(([k]) => !fields.includes(k as keyof TreeEntry)));
  return strip(g) === strip(b);
};

const BUILDAH_DEPARTURES: readonly Departure[] = [
  {
    // imagebuildah's StageExecutor.Copy sets StripSetuidBit/StripSetgidBit for every copy from
    // the build context ("did this change between 18.06 and 19.03?"); BuildKit's fsutil copy
    // chmods with the source's full mode, setuid included.
    why: 'buildah strips setuid/setgid from build-context files, BuildKit keeps them',
    applies: (path, g, b) => path === '/modes/setuid' && g.mode === 0o4755 && b.mode === 0o755 && sameExcept(g, b, ['mode']),
    witness: '/modes/setuid',
  },
  {
    // BuildKit's unpack passes the --chown user to applyRootArchive (mapArchiveHeaderOwner), so
    // every extracted entry gets it; buildah keeps the owners stored in the archive, i.e. the
    // same owners its plain `ADD bundle.tar.gz /opt/` shows.
    why: 'ADD --chown of a local archive: buildah keeps the archive\'s owners, BuildKit applies --chown',
    applies: (path, g, b, buildahTree) => {
      if (path !== '/opt/chowned/bundle' && !path.startsWith('/opt/chowned/bundle/')) return false;
      const plain = buildahTree.find((e) => e.path === path.replace('/opt/chowned/', '/opt/'));
      return g.uid === 1000 && g.gid === 1000 && plain !== undefined && b.uid === plain.uid && b.gid === plain.gid && sameExcept(g, b, ['uid', 'gid']);
    },
    witness: '/opt/chowned/bundle/owned.dat',
  },
  {
    // BuildKit gives the directories a COPY --chmod creates on the way the --chmod mode as well
    // (tonistiigi/fsutil#228 for moby/buildkit#4945; moby/buildkit#5943 is the complaint about
    // it), buildah 1.28 makes them 0755. /built/bin is made by `COPY --chmod=0750 stage/tool.sh
    // /built/bin/tool` and copied on to /from-stage/bin; /chmod-dir by `COPY --chmod=0750 owned /chmod-dir/`.
    why: 'directories created by COPY --chmod: BuildKit applies the mode, buildah makes them 0755',
    applies: (path, g, b) => ['/chmod-dir', '/built/bin', '/from-stage/bin'].includes(path) && g.mode === 0o750 && b.mode === 0o755 && sameExcept(g, b, ['mode']),
    witness: '/chmod-dir',
  },
];

function knownBuildahDifferences(buildahTree: readonly TreeEntry[]): (path: string, g: TreeEntry | undefined, b: TreeEntry | undefined) => boolean {
  return (path, g, b) => g !== undefined && b !== undefined && BUILDAH_DEPARTURES.some((d) => d.applies(path, g, b, buildahTree));
}

/**
 * What BuildKit produces for some paths of DOCKERFILE, checked on gantry's tree by itself so a
 * behaviour both builders could get wrong the same way is still pinned down.
 */
const BUILD_ARGS = { DEST: '/from-build-arg', WHICH: 'c' };

const BUILDKIT_EXPECTS: ReadonlyArray<[string, Partial<TreeEntry>, string]> = [
  ['/app', { type: 'directory', mode: 0o755, uid: 0, gid: 0 }, 'a missing destination of a directory copy is made 0755, not the source mode (moby/buildkit#585, fsutil#47)'],
  ['/app-slash', { type: 'directory', mode: 0o755, uid: 0, gid: 0 }, 'same with a trailing slash on the source'],
  ['/app/config/empty', { type: 'directory', mode: 0o700 }, 'directories inside the copy keep their mode'],
  ['/app/link-to-run', { type: 'symlink', linkTarget: 'run.sh' }, 'symlinks inside a copied directory stay symlinks'],
  ['/app/abs-link', { type: 'symlink', linkTarget: '/etc/passwd' }, 'absolute link targets are kept as written'],
  ['/followed', { type: 'file', size: 2 }, 'a source named by a symlink is followed'],
  ['/globbed/app.json', { type: 'file' }, 'a wildcard match that is a directory copies its contents'],
  ['/renamed.txt', { type: 'file', size: 2 }, 'one file, no trailing slash: the destination is the file'],
  ['/multi/b.txt', { type: 'file' }, 'several sources: the destination is a directory'],
  ['/slash-dir/a.txt', { type: 'file' }, 'a trailing slash makes the destination a directory'],
  ['/modes/setuid', { mode: 0o4755 }, 'setuid survives a copy from the context'],
  ['/modes/ro', { mode: 0o444 }, 'file modes come from the context'],
  ['/owned-num', { mode: 0o755, uid: 1000, gid: 1000 }, '--chown owns the destination directory the copy creates'],
  ['/owned-num/two/three', { uid: 1000, gid: 1000 }, '--chown applies to every copied file'],
  ['/owned-name/two', { uid: 1, gid: 100 }, '--chown=daemon:users resolved in the image\'s /etc/passwd and /etc/group'],
  ['/owned-uid-only/a.txt', { uid: 1000, gid: 1000 }, '--chown=<uid> alone: gid = uid'],
  ['/home/nobody-file', { uid: 65534, gid: 65534 }, '--chown=<name> alone: the user\'s primary group'],
  ['/home', { mode: 0o755, uid: 0, gid: 0 }, 'an existing destination directory keeps its metadata'],
  ['/chown-parents/p1', { mode: 0o755, uid: 1000, gid: 1000 }, 'parents created by a --chown copy belong to that user (fsutil MkdirAll)'],
  ['/etc/secret.conf', { mode: 0o600, uid: 0, gid: 0 }, '--chmod on a file'],
  ['/etc/secret-owned.conf', { mode: 0o640, uid: 1000, gid: 1000 }, '--chown with --chmod'],
  ['/chmod-dir/two', { type: 'directory', mode: 0o750 }, '--chmod applies to copied directories too (moby/buildkit#4945)'],
  ['/chmod-dir', { type: 'directory', mode: 0o750, uid: 0, gid: 0 }, 'the destination directory COPY --chmod creates gets the mode too (fsutil#228)'],
  ['/from-stage/bin', { type: 'directory', mode: 0o750 }, 'so does a parent COPY --chmod creates for a file (/built/bin in the stage)'],
  ['/work/sub/rel/a.txt', { type: 'file' }, 'a relative destination is resolved against WORKDIR'],
  ['/work/sub/b.txt', { type: 'file' }, '`.` is the WORKDIR'],
  ['/from-stage/bin/tool', { mode: 0o750 }, 'COPY --from keeps the stage\'s modes'],
  ['/usr/local/bin/tool', { mode: 0o750 }, 'a file from another stage into an existing directory'],
  ['/opt/bundle/owned.dat', { mode: 0o640, uid: 1234, gid: 4321 }, 'ADD of a local archive keeps its owners'],
  ['/opt/bundle/tool-link', { type: 'symlink', linkTarget: 'bin/tool' }, 'ADD keeps symlinks from the archive'],
  ['/opt/bundle/bin', { type: 'directory', mode: 0o750 }, 'ADD keeps directory modes from the archive'],
  ['/from-stage/bundle/owned.dat', { uid: 1234, gid: 4321 }, 'COPY --from keeps the owners files have in the stage'],
  ['/owned-dir-copy', { type: 'directory', mode: 0o755, uid: 0, gid: 0 }, 'the destination directory is not the source directory: made 0755 root (moby/buildkit#1941)'],
  ['/owned-dir-copy/inner.txt', { mode: 0o600, uid: 1234, gid: 4321 }, 'its contents keep their owners'],
  ['/from-image/passwd', { type: 'file', size: 116 }, 'COPY --from=<image> reads the image\'s files'],
  ['/wild-follow/top-link', { type: 'file', size: 2 }, 'wildcard matches are followed like named sources'],
  ['/notes/notes.txt.gz', { type: 'file' }, 'ADD unpacks tar archives only; other compressed files are copied'],
  ['/home/daemon-work', { type: 'directory', mode: 0o755, uid: 1, gid: 1 }, "WORKDIR's directory belongs to the USER (dispatchWorkdir mkdir WithUser)"],
  ['/from-build-arg/c.txt', { type: 'file', size: 2 }, '--build-arg values expand in COPY'],
  ['/tmp/a.txt', { type: 'file' }, 'a file onto an existing directory lands inside it'],
  ['/tmp', { mode: 0o755 }, 'an existing directory below the destination takes the source directory\'s mode (fsutil copyDirectoryOnly with overwriteTargetMetadata)'],
  ['/etc/extra.conf', { type: 'file' }, 'COPY rootfs/ / merges'],
  ['/srv/new/file', { type: 'file' }, 'COPY rootfs/ / creates what is missing'],
  ['/normalized/b.txt', { type: 'file' }, 'a leading / on a source is relative to the context'],
  ['/normalized/c.txt', { type: 'file' }, '.. inside a source path is cleaned'],
  ['/opt/chowned/bundle/owned.dat', { uid: 1000, gid: 1000 }, 'ADD --chown applies to extracted files (BuildKit passes the chowner to unpack)'],
  ['/opt/chowned/bundle/bin', { uid: 1000, gid: 1000, mode: 0o750 }, 'and to extracted directories'],
  ['/names/empty-file', { type: 'file', size: 0 }, 'an empty file'],
];

describe('COPY/ADD on busybox: gantry and buildah build the same tree', () => {
  let base: BaseImage;
  let dirs: Awaited<ReturnType<typeof comparisonDir>>;
  let built: ComparedBuild;
  before(async () => {
    base = await busyboxBase();
    dirs = await comparisonDir('compare-busybox');
    await context(dirs.ctx);
    built = await buildBoth({ contextDir: dirs.ctx, outDir: dirs.root, base: { name: 'busybox', image: base }, buildArgs: BUILD_ARGS });
  });
  after(async () => {
    await dirs?.cleanup();
  });

  it('the whole merged tree matches buildah (explained exceptions only)', () => {
    assertSameTree(built.gantry, built.buildah, { names: ['gantry', 'buildah'], hardlinksAsFiles: true, ignore: knownBuildahDifferences(built.buildah), limit: 200 });
  });

  it('the listed buildah departures really occur (the exceptions are not stale)', () => {
    for (const d of BUILDAH_DEPARTURES) {
      const g = built.gantry.find((e) => e.path === d.witness);
      const b = built.buildah.find((e) => e.path === d.witness);
      assert.ok(g && b && d.applies(d.witness, g, b, built.buildah), `${d.witness}: ${d.why}`);
    }
  });

  it('hard links between copied context files stay hard links (fsutil keeps an inode map)', () => {
    const names = ['/links/original', '/links/second-name'].map((p) => built.gantry.find((e) => e.path === p));
    assert.deepEqual(names.map((e) => e?.type).sort(), ['file', 'hardlink']);
    const link = names.find((e) => e?.type === 'hardlink')!;
    assert.ok(['/links/original', '/links/second-name'].includes(link.linkTarget!) && link.linkTarget !== link.path);
  });

  it('the paths BuildKit semantics pin down are what BuildKit makes', () => {
    const problems: string[] = [];
    for (const [path, want, why] of BUILDKIT_EXPECTS) {
      const got = built.gantry.find((e) => e.path === path);
      if (!got) {
        problems.push(`${path}: missing (${why})`);
        continue;
      }
      for (const [k, v] of Object.entries(want)) {
        const g = got[k as keyof TreeEntry];
        if (g !== v) problems.push(`${path}: ${k} ${typeof v === 'number' && k === 'mode' ? `${(g as number).toString(8)} != expected ${v.toString(8)}` : `${String(g)} != expected ${String(v)}`} (${why})`);
      }
    }
    assert.deepEqual(problems, []);
  });
});

describe('--target builds the named stage: gantry and buildah agree', () => {
  let dirs: Awaited<ReturnType<typeof comparisonDir>>;
  let built: ComparedBuild;
  before(async () => {
    const base = await busyboxBase();
    dirs = await comparisonDir('compare-busybox-target');
    await context(dirs.ctx);
    built = await buildBoth({ contextDir: dirs.ctx, outDir: dirs.root, base: { name: 'busybox', image: base }, buildArgs: BUILD_ARGS, target: 'assets' });
  });
  after(async () => {
    await dirs?.cleanup();
  });

  it('the stage image matches buildah and has only that stage\'s files', () => {
    assertSameTree(built.gantry, built.buildah, { names: ['gantry', 'buildah'], hardlinksAsFiles: true, ignore: knownBuildahDifferences(built.buildah), limit: 50 });
    const paths = new Set(built.gantry.map((e) => e.path));
    assert.ok(paths.has('/built/bin/tool') && paths.has('/built/bundle/owned.dat'));
    assert.ok(!paths.has('/app') && !paths.has('/from-stage'), 'nothing of the last stage');
  });
});
