import assert from 'node:assert/strict';
import { chmod, lstat, mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { copyItem, RootWriter, type CopyItem, type CopyOptions } from './copy.js';
import { lstatInTree, type SourceTree } from './sources.js';

const NOW = new Date(1_700_000_000_000);

describe('copyItem follows BuildKit (fsutil copy) semantics', () => {
  let dir: string;
  let tree: SourceTree;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gantry-copy-'));
    const ctx = join(dir, 'ctx');
    await mkdir(join(ctx, 'app', 'sub'), { recursive: true });
    await writeFile(join(ctx, 'app', 'run.sh'), 'run\n');
    await writeFile(join(ctx, 'app', 'sub', 'x'), 'x\n');
    await chmod(join(ctx, 'app', 'sub'), 0o700);
    await chmod(join(ctx, 'app'), 0o750);
    await writeFile(join(ctx, 'file.txt'), 'new content\n');
    tree = { dir: ctx, resetOwners: true, name: 'build context' };
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A fresh root with /etc/os-release -> ../usr/lib/os-release and /escape -> /../../outside. */
  async function root(name: string): Promise<string> {
    const r = join(dir, name);
    await mkdir(join(r, 'usr', 'lib'), { recursive: true });
    await mkdir(join(r, 'etc'));
    await writeFile(join(r, 'usr', 'lib', 'os-release'), 'old\n');
    await symlink('../usr/lib/os-release', join(r, 'etc', 'os-release'));
    await symlink('/../../outside', join(r, 'escape'));
    return r;
  }

  async function copy(r: string, rel: string, dest: string, opts: Partial<CopyOptions> = {}, destIsDir = false): Promise<RootWriter> {
    const entry = await lstatInTree(tree, rel, true);
    assert.ok(entry);
    const w = new RootWriter(r);
    const full: CopyOptions = { now: NOW, ...opts };
    if (destIsDir) await w.mkdirAll(dest, full.chown ?? { uid: 0, gid: 0 }, NOW);
    const item: CopyItem = { kind: 'tree', tree, entry, name: rel.split('/').pop()! };
    await copyItem(w, item, dest, full);
    await w.finish();
    return w;
  }

  const mode = async (p: string) => (await lstat(p)).mode & 0o7777;

  it('a directory copied to a missing destination makes it 0755, not the source directory\'s mode', async () => {
    const r = await root('dir-missing');
    await copy(r, 'app', '/app');
    assert.equal(await mode(join(r, 'app')), 0o755);
    assert.equal(await mode(join(r, 'app', 'sub')), 0o700, 'directories inside keep their mode');
    assert.equal(await readFile(join(r, 'app', 'run.sh'), 'utf8'), 'run\n');
  });

  it('a file copied onto an existing symlink writes through it, and the layer names the target', async () => {
    const r = await root('through-link');
    const w = await copy(r, 'file.txt', '/etc/os-release');
    assert.equal(await readlink(join(r, 'etc', 'os-release')), '../usr/lib/os-release');
    assert.equal(await readFile(join(r, 'usr', 'lib', 'os-release'), 'utf8'), 'new content\n');
    assert.ok(w.written.has('usr/lib/os-release') && !w.written.has('etc/os-release'));
  });

  it('a symlink pointing out of the root is resolved inside it', async () => {
    const r = await root('escape');
    await copy(r, 'file.txt', '/escape');
    assert.equal(await readFile(join(r, 'outside'), 'utf8'), 'new content\n');
    await assert.rejects(lstat(join(dir, 'outside')));
  });

  it('--chmod applies to the directories the copy creates, not to existing ones', async () => {
    const cases: Array<[string, string, boolean, string[]]> = [
      ['app', '/new/', true, ['new']],
      ['app', '/deep/er', false, ['deep', 'deep/er']],
      ['file.txt', '/p1/p2/file', false, ['p1', 'p1/p2']],
    ];
    for (const [i, [src, dest, destIsDir, created]] of cases.entries()) {
      const r = await root(`chmod-${i}`);
      await copy(r, src, dest, { chmod: 0o750 }, destIsDir);
      for (const d of created) assert.equal(await mode(join(r, d)), 0o750, `${src} -> ${dest}: /${d}`);
      assert.equal(await mode(join(r, 'usr')), 0o755, 'existing directories are untouched');
    }
  });

  it('--chown owns the destination directory it creates', async () => {
    const r = await root('chown');
    const w = await copy(r, 'app', '/owned', { chown: { uid: 1000, gid: 1000 } });
    assert.deepEqual(w.owners.get('owned'), { uid: 1000, gid: 1000 });
    assert.equal(await mode(join(r, 'owned')), 0o755);
  });
});
