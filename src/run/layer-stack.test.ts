import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { chmodSync, lstatSync, mkdirSync, readdirSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readXattrs, isOpaqueMarked } from '../fs/diff/index.js';
import { isGantryError } from '../util/errors.js';
import { run } from '../testing/exec.js';
import { tempDir, type TempDir } from '../testing/tmp.js';
import { LayerStack } from './layer-stack.js';
import { createDirInUpper, Skeleton } from './mountpoints.js';

async function whiteout(path: string): Promise<void> {
  await run('mknod', [path, 'c', '0', '0'], { check: true });
}

async function opaque(path: string): Promise<void> {
  await run('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', path], { check: true });
}

describe('LayerStack: overlay lookups without a mount', () => {
  let tmp: TempDir;
  let stack: LayerStack;
  let layers: string[];

  before(async () => {
    tmp = await tempDir('layer-stack');
    layers = ['upper', 'mid', 'base'].map((n) => join(tmp.path, n));
    const [upper, mid, base] = layers;
    for (const d of ['etc/ssl', 'run', 'usr/lib', 'a', 'srv', 'data']) mkdirSync(join(base, d), { recursive: true });
    writeFileSync(join(base, 'etc/passwd'), 'root\n');
    writeFileSync(join(base, 'gone'), '');
    writeFileSync(join(base, 'a/b'), '');
    writeFileSync(join(base, 'usr/lib/x'), '');
    writeFileSync(join(base, 'file'), '');
    symlinkSync('/run', join(base, 'run-link'));
    mkdirSync(join(base, 'var'));
    symlinkSync('/run', join(base, 'var/run'));
    symlinkSync('usr/lib', join(base, 'lib'));
    symlinkSync('loop2', join(base, 'loop1'));
    symlinkSync('loop1', join(base, 'loop2'));
    chmodSync(join(base, 'srv'), 0o750);
    utimesSync(join(base, 'srv'), 1_600_000_000, 1_600_000_000);
    for (const d of ['a', 'etc']) mkdirSync(join(mid, d), { recursive: true });
    await whiteout(join(mid, 'gone'));
    await opaque(join(mid, 'a'));
    writeFileSync(join(mid, 'a/c'), '');
    writeFileSync(join(mid, 'etc/new'), '');
    mkdirSync(join(upper, 'data'), { recursive: true });
    await opaque(join(upper, 'data'));
    await whiteout(join(upper, 'srv-gone'));
    stack = new LayerStack(layers);
  });
  after(() => tmp.cleanup());

  const cases: Array<{ path: string; follow?: boolean; real: string; missing: string[]; kind?: string; layer?: number }> = [
    { path: '/etc/passwd', real: '/etc/passwd', missing: [], kind: 'file', layer: 2 },
    { path: '/etc/new', real: '/etc/new', missing: [], kind: 'file', layer: 1 },
    { path: '/gone', real: '/gone', missing: ['gone'] },
    { path: '/a/b', real: '/a/b', missing: ['b'] },
    { path: '/a/c', real: '/a/c', missing: [], kind: 'file', layer: 1 },
    { path: '/var/run/secrets/x', real: '/run/secrets/x', missing: ['secrets', 'x'] },
    { path: '/run-link', follow: true, real: '/run', missing: [], kind: 'dir' },
    { path: '/run-link', follow: false, real: '/run-link', missing: [], kind: 'symlink', layer: 2 },
    { path: '/lib/x', real: '/usr/lib/x', missing: [], kind: 'file', layer: 2 },
    { path: '/lib/../y', real: '/usr/y', missing: ['y'] },
    { path: '/../../etc/./passwd', real: '/etc/passwd', missing: [], kind: 'file' },
    { path: '/', real: '/', missing: [], kind: 'dir', layer: 0 },
  ];
  for (const c of cases) {
    it(`resolves ${c.path}${c.follow === false ? ' (not following the last link)' : ''} to ${c.real}`, async () => {
      const r = await stack.resolve(c.path, { followLast: c.follow ?? true });
      assert.equal(r.path, c.real);
      assert.deepEqual(r.missing, c.missing);
      if (c.kind) assert.equal(r.leaf?.kind, c.kind);
      if (c.layer !== undefined) assert.equal(r.leaf?.layer, c.layer);
    });
  }

  it('rejects symlink loops and files used as directories', async () => {
    await assert.rejects(stack.resolve('/loop1/x'), (e: unknown) => isGantryError(e, 'UNSAFE_PATH'));
    await assert.rejects(stack.resolve('/file/x'), (e: unknown) => isGantryError(e, 'INVALID_ARGUMENT'));
  });

  it('builds skeleton mount points at the symlink-free place, copying the shadowed directories', async () => {
    const skelDir = join(tmp.path, 'skel');
    mkdirSync(skelDir);
    const skel = new Skeleton(skelDir, stack);
    assert.equal(await skel.ensure('/var/run/secrets/token', 'file'), '/run/secrets/token');
    assert.equal(await skel.ensure('/srv/cache', 'dir'), '/srv/cache');
    assert.equal(await skel.ensure('/etc/passwd', 'file'), '/etc/passwd', 'existing: nothing to create');
    // Hidden by the upperdir: a skeleton entry could not show through.
    assert.equal(await skel.ensure('/data/x', 'dir'), undefined);
    assert.equal(await skel.ensure('/srv-gone', 'dir'), undefined);
    await assert.rejects(skel.ensure('/etc/passwd', 'dir'), (e: unknown) => isGantryError(e, 'INVALID_ARGUMENT'));
    await skel.finish();
    assert.deepEqual(readdirSync(skelDir).sort(), ['run', 'srv']);
    assert.ok(lstatSync(join(skelDir, 'run/secrets/token')).isFile());
    const srv = statSync(join(skelDir, 'srv'));
    assert.equal(srv.mode & 0o7777, 0o750);
    assert.equal(srv.mtimeMs, 1_600_000_000_000);
  });

  it('creates a missing working directory in the upperdir, replacing a whiteout with an opaque directory', async () => {
    const [upper] = layers;
    assert.equal(await createDirInUpper(stack, '/srv/app'), '/srv/app');
    assert.equal(statSync(join(upper, 'srv')).mode & 0o7777, 0o750);
    assert.equal(statSync(join(upper, 'srv')).mtimeMs, 1_600_000_000_000);
    assert.equal(statSync(join(upper, 'srv/app')).mode & 0o7777, 0o755);
    await createDirInUpper(stack, '/srv-gone');
    assert.ok(statSync(join(upper, 'srv-gone')).isDirectory());
    const attrs = await readXattrs([join(upper, 'srv-gone')]);
    assert.ok(isOpaqueMarked(attrs.get(join(upper, 'srv-gone'))));
    await assert.rejects(createDirInUpper(stack, '/etc/passwd'), (e: unknown) => isGantryError(e, 'INVALID_ARGUMENT'));
  });
});
