/**
 * FROM scratch builds with COPY/ADD into OCI layouts, read back with skopeo and umoci.
 */
import assert from 'node:assert/strict';
import { createWriteStream, lstatSync } from 'node:fs';
import { mkdtemp, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { describe, it } from 'node:test';
import tar from 'tar-stream';
import { buildToLayout, CONTEXT_MTIME, shape, skopeoConfig, skopeoManifest, unpackedTree, type FileSpec } from './support.js';

const CTX: Record<string, FileSpec> = {
  'a.txt': 'A',
  'b.txt': 'B',
  'c.md': 'C',
  'dir/one': '1',
  'dir/sub/two': '2',
  'dir/link': { symlink: 'one' },
  'exec.sh': { content: '#!/bin/sh\n', mode: 0o755 },
  'linked-file': { symlink: 'a.txt' },
};

describe('COPY destination and wildcard rules (BuildKit semantics)', () => {
  const cases: Array<{ name: string; copy: string; want: Record<string, string> }> = [
    { name: 'file to a file path', copy: 'COPY a.txt /x', want: { x: 'file:A' } },
    { name: 'file to a directory path', copy: 'COPY a.txt /x/', want: { x: 'dir', 'x/a.txt': 'file:A' } },
    { name: 'file to a new nested path', copy: 'COPY a.txt /p/q/r', want: { p: 'dir', 'p/q': 'dir', 'p/q/r': 'file:A' } },
    { name: 'wildcard into a directory', copy: 'COPY *.txt /out/', want: { out: 'dir', 'out/a.txt': 'file:A', 'out/b.txt': 'file:B' } },
    { name: 'question mark wildcard', copy: 'COPY ?.md /m/', want: { m: 'dir', 'm/c.md': 'file:C' } },
    { name: 'character class', copy: 'COPY [ab].txt /k/', want: { k: 'dir', 'k/a.txt': 'file:A', 'k/b.txt': 'file:B' } },
    { name: 'several sources without slash make a directory', copy: 'COPY a.txt b.txt /two', want: { two: 'dir', 'two/a.txt': 'file:A', 'two/b.txt': 'file:B' } },
    { name: 'a non-matching wildcard next to a match', copy: 'COPY nomatch* a.txt /n/', want: { n: 'dir', 'n/a.txt': 'file:A' } },
    {
      name: 'a directory copies its contents',
      copy: 'COPY dir /d',
      want: { d: 'dir', 'd/link': 'link:one', 'd/one': 'file:1', 'd/sub': 'dir', 'd/sub/two': 'file:2' },
    },
    { name: 'a named symlink is followed', copy: 'COPY linked-file /f', want: { f: 'file:A' } },
    { name: 'relative destination uses WORKDIR', copy: 'WORKDIR /w\nCOPY a.txt rel/', want: { w: 'dir', 'w/rel': 'dir', 'w/rel/a.txt': 'file:A' } },
    { name: 'dot destination is WORKDIR', copy: 'WORKDIR /w\nCOPY a.txt .', want: { w: 'dir', 'w/a.txt': 'file:A' } },
    { name: '--exclude', copy: 'COPY --exclude=sub dir /e/', want: { e: 'dir', 'e/link': 'link:one', 'e/one': 'file:1' } },
    { name: '--parents keeps the source path', copy: 'COPY --parents dir/sub/two /p/', want: { p: 'dir', 'p/dir': 'dir', 'p/dir/sub': 'dir', 'p/dir/sub/two': 'file:2' } },
    { name: '--link', copy: 'COPY --link dir/sub /l/', want: { l: 'dir', 'l/two': 'file:2' } },
    { name: 'heredoc source', copy: 'COPY <<EOF /h.txt\nhello\nEOF', want: { 'h.txt': 'file:hello\n' } },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const b = await buildToLayout(`FROM scratch\n${c.copy}\n`, CTX);
      try {
        assert.deepEqual(shape(await unpackedTree(b.layout)), c.want);
      } finally {
        await b.tmp.cleanup();
      }
    });
  }

  it('fails with "no source files were specified" when no pattern matches', async () => {
    await assert.rejects(buildToLayout('FROM scratch\nCOPY nomatch* /x/\n', CTX), /Dockerfile:2: no source files were specified/);
  });
  it('fails on a missing literal source', async () => {
    await assert.rejects(buildToLayout('FROM scratch\nCOPY missing.txt /x\n', CTX), /Dockerfile:2: COPY failed: "\/missing.txt": not found in build context/);
  });
});

describe('COPY keeps context metadata as BuildKit does', () => {
  it('modes and mtimes from the context, owner 0:0, --chown numeric and --chmod', async () => {
    const b = await buildToLayout('FROM scratch\nCOPY exec.sh a.txt /bin/\nCOPY --chown=1000:2000 --chmod=640 b.txt /owned/\n', CTX);
    try {
      const tree = await unpackedTree(b.layout);
      assert.equal(tree['bin/exec.sh']!.mode, 0o755);
      assert.equal(tree['bin/a.txt']!.mode, 0o644);
      assert.equal(tree['bin/a.txt']!.mtime, CONTEXT_MTIME);
      assert.deepEqual([tree['bin/a.txt']!.uid, tree['bin/a.txt']!.gid], [0, 0]);
      assert.equal(tree['bin']!.mode, 0o755);
      assert.deepEqual([tree['owned/b.txt']!.uid, tree['owned/b.txt']!.gid, tree['owned/b.txt']!.mode], [1000, 2000, 0o640]);
      // Directories the copy creates belong to the --chown user (fsutil's MkdirAll chowns them)
      // and get the --chmod mode (tonistiigi/fsutil#228; moby/buildkit#5943 shows exactly this).
      assert.deepEqual([tree['owned']!.uid, tree['owned']!.gid, tree['owned']!.mode], [1000, 2000, 0o640]);
    } finally {
      await b.tmp.cleanup();
    }
  });

  it('--parents copies the directories on the way with their context metadata', async () => {
    const b = await buildToLayout('FROM scratch\nCOPY --parents ./tree/./x/y/file /p/\n', {
      'tree/x/y/file': 'f',
      'tree/x/keep': { dir: true, mode: 0o750 },
    }, {}, async (ctx) => {
      const { chmod } = await import('node:fs/promises');
      await chmod(join(ctx, 'tree/x'), 0o700);
    });
    try {
      const tree = await unpackedTree(b.layout);
      assert.deepEqual(shape(tree), { p: 'dir', 'p/x': 'dir', 'p/x/y': 'dir', 'p/x/y/file': 'file:f' });
      assert.equal(tree['p/x']!.mode, 0o700);
    } finally {
      await b.tmp.cleanup();
    }
  });

  it('one layer per COPY, holding only what the step wrote', async () => {
    const b = await buildToLayout('FROM scratch\nCOPY a.txt /one/\nCOPY b.txt /two/\n', CTX);
    try {
      const m = await skopeoManifest(`oci:${b.layout}:latest`);
      assert.equal(m.mediaType, 'application/vnd.oci.image.manifest.v1+json');
      assert.equal(m.layers.length, 2);
      assert.ok(m.layers.every((l) => l.mediaType === 'application/vnd.oci.image.layer.v1.tar+gzip'));
      const cfg = await skopeoConfig(`oci:${b.layout}:latest`);
      assert.deepEqual(cfg.history!.map((h) => h.created_by), ['COPY a.txt /one/ # buildkit', 'COPY b.txt /two/ # buildkit']);
      assert.equal(b.result.steps.length, 2);
      assert.deepEqual(b.result.steps.map((s) => s.layer), m.layers.map((l) => l.digest));
    } finally {
      await b.tmp.cleanup();
    }
  });
});

describe('.dockerignore', () => {
  it('hides excluded files from COPY, with exceptions, preferring <Dockerfile>.dockerignore', async () => {
    const files: Record<string, FileSpec> = {
      ...CTX,
      '.dockerignore': '*.txt\n!b.txt\ndir/sub\n',
      'alt.Dockerfile': 'FROM scratch\nCOPY . /ctx/\n',
      'alt.Dockerfile.dockerignore': 'dir\n*.md\n',
    };
    const b = await buildToLayout('FROM scratch\nCOPY . /ctx/\n', files);
    try {
      const t = shape(await unpackedTree(b.layout));
      assert.equal(t['ctx/a.txt'], undefined);
      assert.equal(t['ctx/b.txt'], 'file:B');
      assert.equal(t['ctx/dir/sub'], undefined);
      assert.equal(t['ctx/dir/one'], 'file:1');
    } finally {
      await b.tmp.cleanup();
    }
    const alt = await buildToLayout('FROM scratch\n', files, { dockerfile: 'alt.Dockerfile' });
    try {
      // the -f path is not found relative to cwd, so it is taken relative to the context
      const t = shape(await unpackedTree(alt.layout));
      assert.equal(t['ctx/a.txt'], 'file:A');
      assert.equal(t['ctx/dir'], undefined);
      assert.equal(t['ctx/c.md'], undefined);
    } finally {
      await alt.tmp.cleanup();
    }
  });
});

describe('multi-stage', () => {
  it('COPY --from by name and index, FROM an earlier stage, only needed stages', async () => {
    const df = [
      'FROM scratch AS build',
      'COPY dir /out/',
      'FROM scratch AS unused',
      'COPY missing-file /',
      'FROM build AS derived',
      'COPY a.txt /extra',
      'FROM scratch',
      'COPY --from=build /out/sub /from-name/',
      'COPY --from=0 /out/one /from-index',
      'COPY --from=derived /extra /derived-extra',
      '',
    ].join('\n');
    const b = await buildToLayout(df, CTX);
    try {
      assert.deepEqual(shape(await unpackedTree(b.layout)), {
        'derived-extra': 'file:A',
        'from-index': 'file:1',
        'from-name': 'dir',
        'from-name/two': 'file:2',
      });
      assert.ok(!b.result.steps.some((s) => s.stage === 'unused'));
    } finally {
      await b.tmp.cleanup();
    }
  });

  it('a failing stage fails the build with its own location', async () => {
    const df = 'FROM scratch AS ok\nCOPY a.txt /\nFROM scratch AS broken\nCOPY nope.txt /\nFROM scratch\nCOPY --from=ok /a.txt /\nCOPY --from=broken / /b/\n';
    await assert.rejects(buildToLayout(df, CTX), /Dockerfile:4: COPY failed: "\/nope.txt": not found in build context/);
  });

  it('--target builds a middle stage', async () => {
    const b = await buildToLayout('FROM scratch AS first\nCOPY a.txt /\nFROM scratch AS second\nCOPY b.txt /\n', CTX, { target: 'first' });
    try {
      assert.deepEqual(shape(await unpackedTree(b.layout)), { 'a.txt': 'file:A' });
    } finally {
      await b.tmp.cleanup();
    }
  });
});

async function writeTarGz(path: string, entries: Array<{ name: string; content?: string; type?: 'directory' }>): Promise<void> {
  const pack = tar.pack();
  const done = pipeline(pack, createGzip(), createWriteStream(path));
  for (const e of entries) {
    if (e.type === 'directory') pack.entry({ name: e.name, type: 'directory', mode: 0o750, uid: 7, gid: 8 });
    else pack.entry({ name: e.name, mode: 0o600, uid: 7, gid: 8 }, e.content ?? '');
  }
  pack.finalize();
  await done;
}

describe('ADD of local archives', () => {
  it('extracts a tar.gz into the destination, keeping the archive owners; COPY does not', async () => {
    const df = 'FROM scratch\nADD bundle.tar.gz /opt/\nCOPY bundle.tar.gz /raw/\nADD a.txt /plain/\n';
    const b = await buildToLayout(df, { 'a.txt': 'A' }, {}, (ctx) =>
      writeTarGz(join(ctx, 'bundle.tar.gz'), [{ name: 'pkg/', type: 'directory' }, { name: 'pkg/readme', content: 'read me' }]),
    );
    try {
      const tree = await unpackedTree(b.layout);
      assert.equal(tree['opt/pkg/readme']?.content, 'read me');
      assert.deepEqual([tree['opt/pkg/readme']!.uid, tree['opt/pkg/readme']!.gid, tree['opt/pkg/readme']!.mode], [7, 8, 0o600]);
      assert.equal(tree['opt/pkg']!.mode, 0o750);
      assert.equal(tree['raw/bundle.tar.gz']?.type, 'file');
      assert.equal(tree['plain/a.txt']?.content, 'A');
    } finally {
      await b.tmp.cleanup();
    }
  });

  it('ADD --link of a local archive unpacks it too', async () => {
    const b = await buildToLayout('FROM scratch\nADD --link bundle.tar.gz /opt/\n', {}, {}, (ctx) =>
      writeTarGz(join(ctx, 'bundle.tar.gz'), [{ name: 'pkg/', type: 'directory' }, { name: 'pkg/readme', content: 'read me' }]),
    );
    try {
      assert.equal((await unpackedTree(b.layout))['opt/pkg/readme']?.content, 'read me');
    } finally {
      await b.tmp.cleanup();
    }
  });

  it('a symlink in the archive never takes ADD --chown or the layer outside the root', async () => {
    // `x -> /etc` then `x/hostname`: the unpacker resolves x inside the destination; the
    // bookkeeping after it once joined `x/hostname` as written and followed the host's /etc.
    const hostBefore = lstatSync('/etc/hostname', { throwIfNoEntry: false });
    const df = 'FROM scratch\nADD --chown=4242:4243 evil.tar.gz /dest/\n';
    const b = await buildToLayout(df, {}, {}, async (ctx) => {
      const pack = tar.pack();
      const done = pipeline(pack, createGzip(), createWriteStream(join(ctx, 'evil.tar.gz')));
      pack.entry({ name: 'x', type: 'symlink', linkname: '/etc', mode: 0o777 });
      pack.entry({ name: 'x/hostname', mode: 0o644 }, 'from the archive\n');
      pack.finalize();
      await done;
    });
    try {
      const after = lstatSync('/etc/hostname', { throwIfNoEntry: false });
      if (hostBefore) assert.deepEqual([after?.uid, after?.gid], [hostBefore.uid, hostBefore.gid], "the host's /etc/hostname keeps its owner");
      const tree = await unpackedTree(b.layout);
      assert.equal(tree['dest/etc/hostname']?.content, 'from the archive\n');
      assert.deepEqual([tree['dest/etc/hostname']!.uid, tree['dest/etc/hostname']!.gid], [4242, 4243]);
      assert.equal(tree['dest/x']?.type, 'symlink');
      assert.ok(!Object.values(tree).some((n) => n.type === 'file' && n.content !== undefined && n.content !== 'from the archive\n'), 'no host file reached the layer');
    } finally {
      await b.tmp.cleanup();
    }
  });
});

describe('a later source replacing what an earlier one wrote', () => {
  // `COPY a b /dest/`: a/x is a directory, b/x a symlink to a directory outside the root. The
  // symlink replaces the directory; nothing remembered about a/x may then be read or set through
  // it (the layer once held the host file below the symlink, and directory times went to the host).
  for (const link of ['', '--link ']) {
    it(`${link ? 'COPY --link' : 'COPY'}: only the symlink is in the layer and the host directory is untouched`, async () => {
      const outside = await mkdtemp(join(tmpdir(), 'gantry-outside-'));
      try {
        await writeFile(join(outside, 'passwd'), 'HOST-SECRET\n');
        await utimes(outside, 1_000_000_000, 1_000_000_000);
        const b = await buildToLayout(`FROM scratch\nCOPY ${link}a b /dest/\n`, { 'a/x/passwd': 'from a\n', 'b/x': { symlink: outside } });
        try {
          const tree = await unpackedTree(b.layout);
          assert.equal(tree['dest/x']?.type, 'symlink');
          assert.equal(tree['dest/x/passwd'], undefined);
          assert.ok(!Object.values(tree).some((n) => n.content?.includes('HOST-SECRET')), 'no host file in the layer');
          assert.equal((await stat(outside)).mtimeMs, 1_000_000_000_000, 'the host directory keeps its mtime');
        } finally {
          await b.tmp.cleanup();
        }
      } finally {
        await rm(outside, { recursive: true, force: true });
      }
    });
  }
});
