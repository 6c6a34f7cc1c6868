/**
 * Parts of the inplace backend that are safe outside a pod: container detection, the refusal,
 * mount placement, snapshots and wipeRoot on a temporary root (never `/`). RUN itself is tested
 * in a pod (inplace-pod.test.ts).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isGantryError } from '../util/errors.js';
import { diffSnapshots, takeSnapshot } from '../fs/index.js';
import { tempDir, type TempDir } from '../testing/tmp.js';
import { createInplaceSandbox } from './inplace.js';
import { detectContainer } from './inplace-detect.js';
import { placeMounts } from './inplace-mounts.js';
import { detectSandbox } from './detect.js';

let tmp: TempDir;
let seq = 0;
before(async () => {
  tmp = await tempDir('inplace');
});
after(async () => {
  await tmp?.cleanup();
});

function fakeRoot(files: Record<string, string>): string {
  const root = join(tmp.path, `probe-${++seq}`);
  mkdirSync(root, { recursive: true });
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), content);
  }
  return root;
}

const HOST_MOUNTINFO = '22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n23 22 0:5 / /proc rw - proc proc rw\n';

describe('detectContainer', () => {
  const cases: Array<{ name: string; files: Record<string, string>; env?: Record<string, string>; want: boolean; evidence: RegExp }> = [
    { name: 'a plain host', files: { 'proc/self/cgroup': '0::/user.slice/user-1000.slice/session-2.scope\n', 'proc/self/mountinfo': HOST_MOUNTINFO }, want: false, evidence: /no container/ },
    { name: 'Docker marker file', files: { '.dockerenv': '' }, want: true, evidence: /\.dockerenv/ },
    { name: 'Podman marker file', files: { 'run/.containerenv': '' }, want: true, evidence: /Podman/ },
    { name: 'Kubernetes service account', files: { 'var/run/secrets/kubernetes.io/serviceaccount/token': 't' }, want: true, evidence: /Kubernetes/ },
    { name: 'container variable', files: {}, env: { container: 'podman' }, want: true, evidence: /container=podman/ },
    { name: 'cgroup v1 names', files: { 'proc/self/cgroup': '12:pids:/kubepods/besteffort/pod1/abc\n' }, want: true, evidence: /kubepods/ },
    {
      name: 'cgroup v2 namespace (0::/) but an overlay root, the last mount on / winning',
      files: { 'proc/self/cgroup': '0::/\n', 'proc/self/mountinfo': HOST_MOUNTINFO + '99 22 0:50 / / rw - overlay overlay rw,lowerdir=/l\n' },
      want: true,
      evidence: /overlay/,
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const got = detectContainer({ probeRoot: fakeRoot(c.files), env: c.env ?? {} });
      assert.equal(got.inContainer, c.want, got.evidence);
      assert.match(got.evidence, c.evidence);
    });
  }
});

describe('createInplaceSandbox', () => {
  const host = () => ({ probeRoot: fakeRoot({ 'proc/self/mountinfo': HOST_MOUNTINFO }), env: {} });

  test('refuses to build over / outside a container, with a hint', () => {
    assert.throws(() => createInplaceSandbox({ probe: host() }), (err: unknown) => {
      assert.ok(isGantryError(err));
      assert.equal(err.code, 'UNSUPPORTED');
      assert.match(err.message, /refusing to build in place/);
      assert.match(err.hint ?? '', /--force/);
      return true;
    });
  });

  test('--force and GANTRY_INPLACE=1 override the refusal (creating writes nothing)', () => {
    assert.equal(createInplaceSandbox({ probe: host(), force: true }).kind, 'inplace');
    assert.equal(createInplaceSandbox({ probe: { ...host(), env: { GANTRY_INPLACE: '1' } } }).kind, 'inplace');
  });

  test('detectSandbox reports inplace as implemented, usable only in a container', async () => {
    const outside = await detectSandbox({ probe: host() });
    const check = outside.checks.find((c) => c.kind === 'inplace')!;
    assert.deepEqual([check.implemented, check.usable], [true, false]);
    assert.match(check.reason, /not inside a container/);
    const inside = await detectSandbox({ probe: { probeRoot: fakeRoot({ '.dockerenv': '' }), env: {} } });
    assert.equal(inside.checks.find((c) => c.kind === 'inplace')!.usable, true);
  });

  test('on another root: snapshot() finds changes, wipeRoot() keeps only the ignore list; run() refuses', async () => {
    const root = fakeRoot({ 'etc/passwd': 'root', 'kaniko/keep': 'k', 'data/vol/keep': 'v', 'data/other': 'o', 'bin/sh': 'x' });
    const sb = createInplaceSandbox({ root, ignorePaths: ['/data/vol'] });
    assert.ok(sb.ignorePaths.includes('/kaniko') && sb.ignorePaths.includes('/data/vol'));
    assert.throws(() => sb.snapshot(), /without a baseline/);
    sb.rebaseline();
    writeFileSync(join(root, 'new'), 'n');
    writeFileSync(join(root, 'kaniko/ignored'), 'i');
    assert.deepEqual(sb.snapshot().changes, [{ path: '/new', kind: 'added' }]);
    assert.deepEqual(sb.snapshot().changes, [], 'the snapshot became the new baseline');
    await sb.wipeRoot();
    // /etc stays, emptied, as the parent of the ignored /etc/mtab.
    assert.deepEqual(readdirSync(root).sort(), ['data', 'etc', 'kaniko']);
    assert.deepEqual(readdirSync(join(root, 'etc')), []);
    assert.deepEqual(readdirSync(join(root, 'data')), ['vol']);
    assert.equal(readFileSync(join(root, 'kaniko/keep'), 'utf8'), 'k');
    await assert.rejects(sb.run({ argv: ['true'], env: [], cwd: '/', user: { uid: 0, gid: 0, groups: [] }, network: 'default', mounts: [] }), /runs commands on \/ only/);
    await sb.close();
  });
});

describe('placeMounts', () => {
  test('secrets, tmpfs and caches appear at their targets, then leave the tree as it was', () => {
    const root = fakeRoot({ 'var/cache/apt/image-file': 'from the image', 'etc/passwd': 'root' });
    const host = fakeRoot({ 'secret': 's3cret', 'ctx/dir/f': 'ctx' });
    const cache = join(host, 'cache');
    mkdirSync(cache);
    writeFileSync(join(cache, 'old'), 'o');
    symlinkSync('f', join(host, 'ctx/dir/link'));
    const before = takeSnapshot(root);
    const placed = placeMounts(root, [
      { type: 'bind', source: join(host, 'secret'), target: '/run/secrets/token', readonly: true },
      { type: 'bind', source: join(host, 'ctx'), target: '/src' },
      { type: 'tmpfs', target: '/scratch' },
      { type: 'cache', source: cache, target: '/var/cache/apt' },
    ]);
    assert.equal(readFileSync(join(root, 'run/secrets/token'), 'utf8'), 's3cret');
    assert.equal(readFileSync(join(root, 'src/dir/link'), 'utf8'), 'ctx');
    assert.deepEqual(readdirSync(join(root, 'scratch')), []);
    assert.deepEqual(readdirSync(join(root, 'var/cache/apt')), ['old'], 'the cache hides the image content, as a mount would');
    writeFileSync(join(root, 'var/cache/apt/new'), 'n');
    writeFileSync(join(root, 'scratch/t'), 't');
    placed.remove();
    assert.ok(!existsSync(join(root, 'run')) && !existsSync(join(root, 'src')) && !existsSync(join(root, 'scratch')));
    assert.deepEqual(readdirSync(join(root, 'var/cache/apt')), ['image-file']);
    assert.deepEqual(readdirSync(cache).sort(), ['new', 'old']);
    const changes = diffSnapshots(before, takeSnapshot(root), { relaxed: placed.touched });
    assert.deepEqual(changes, [], `touched: ${[...placed.touched].join(', ')}`);
    assert.ok(placed.touched.has('/') && placed.touched.has('/var/cache') && placed.touched.has('/var/cache/apt'));
  });
});
