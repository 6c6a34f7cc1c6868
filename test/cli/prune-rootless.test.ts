/**
 * `gantry prune` run by an unprivileged user on caches holding files of rootless builds, which
 * belong to the user's subordinate ids (container uid 1000 -> the range start + 999), in
 * directories the user cannot enter. With a range, prune re-executes in the builds' user
 * namespace and removes them; without one, it removes what it can and says why the rest stays.
 * Real users, created here (the suite runs as root), like test/run/rootless-compare.test.ts.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { run } from '../../src/testing/exec.js';
import { createTestUser, type TestUser } from '../../src/testing/subids.js';
import { tempDir, type TempDir } from '../../src/testing/tmp.js';

// dist/test/cli/<this>.js -> the repository root, where bin/gantry.js loads dist/.
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const GANTRY = join(REPO, 'bin', 'gantry.js');
const HEX = 'f'.repeat(64);

async function sh(cmd: string, args: string[]): Promise<string> {
  return (await run(cmd, args, { check: true })).stdout;
}

interface PruneUser extends TestUser {
  /** HOME: the directory the user owns. */
  home: string;
  /** The subordinate id container uid/gid 1000 maps to (an unused id without a range). */
  foreignId: number;
}

async function createUser(parent: string, withSubIds: boolean): Promise<PruneUser> {
  const u = await createTestUser(parent, { prefix: 'gantrypr', withSubIds });
  return { ...u, home: u.dir, foreignId: u.subIdStart !== undefined ? u.subIdStart + 999 : 3_999_999_000 + (u.uid % 1000) };
}

/**
 * What rootless builds leave: a RUN cache mount with apt's 0700 `_apt` directory and an unpacked
 * layer with a 0700 home, both owned by container uid 1000, and a layer index owned by the user.
 */
async function fillCaches(user: PruneUser): Promise<void> {
  const base = join(user.home, '.cache', 'gantry');
  const aptPartial = join(base, 'run-cache', 'apt', 'lists', 'partial');
  // A stored layer is <hex>/{tree,size,notes.json} (src/cache/layer-store.ts).
  const appHome = join(base, 'layers', HEX, 'tree', 'home', 'app');
  for (const d of [aptPartial, appHome, join(base, 'layer-index')]) mkdirSync(d, { recursive: true });
  writeFileSync(join(aptPartial, 'pkg'), 'x'.repeat(500));
  writeFileSync(join(appHome, '.profile'), 'x'.repeat(300));
  writeFileSync(join(base, 'layers', HEX, 'size'), '300');
  writeFileSync(join(base, 'layers', HEX, 'notes.json'), 'null');
  writeFileSync(join(base, 'layer-index', `${HEX}.json`), '{}');
  await sh('chown', ['-R', `${user.uid}:${user.gid}`, user.home]);
  for (const d of [aptPartial, appHome]) {
    await sh('chown', ['-R', `${user.foreignId}:${user.foreignId}`, d]);
    chmodSync(d, 0o700);
  }
}

function pruneAsUser(user: PruneUser): Promise<{ code: number; stdout: string; stderr: string }> {
  const args = [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--init-groups', '--', process.execPath, GANTRY, 'prune'];
  return new Promise((resolvePromise) => {
    execFile('setpriv', args, {
      cwd: user.home,
      env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: user.home, LC_ALL: 'C' },
      timeout: 60_000,
    }, (err, stdout, stderr) => {
      resolvePromise({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

const cacheEntries = (user: PruneUser, cache: string) => {
  const dir = join(user.home, '.cache', 'gantry', cache);
  return existsSync(dir) ? readdirSync(dir) : [];
};

describe('gantry prune by an unprivileged user on files of rootless builds', () => {
  let tmp: TempDir;
  const users: PruneUser[] = [];
  before(async () => {
    tmp = await tempDir('prune-rootless');
    chmodSync(tmp.path, 0o755);
  });
  after(async () => {
    for (const u of users) await u.cleanup();
    await tmp?.cleanup();
  });

  it('with a subordinate range: removes them inside the build user namespace', async () => {
    const user = await createUser(tmp.path, true);
    users.push(user);
    await fillCaches(user);
    const r = await pruneAsUser(user);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^run-cache: freed 500B \(1 entry\)/m);
    assert.match(r.stdout, /^layers: freed 300B \(1 entry\)/m);
    assert.match(r.stdout, /^layer-index: freed 2B \(1 entry\)/m);
    for (const cache of ['run-cache', 'layers', 'layer-index']) assert.deepEqual(cacheEntries(user, cache), [], cache);
  });

  it('without one: removes what the user owns and explains what stays', async () => {
    const user = await createUser(tmp.path, false);
    users.push(user);
    await fillCaches(user);
    const r = await pruneAsUser(user);
    assert.notEqual(r.code, 0, r.stdout);
    assert.match(r.stderr, /EACCES|permission denied/i);
    assert.match(r.stderr, /subordinate ids/);
    assert.match(r.stdout, /^layer-index: freed 2B \(1 entry\)/m);
    assert.deepEqual(cacheEntries(user, 'layer-index'), []);
    assert.deepEqual(cacheEntries(user, 'run-cache'), ['apt']);
  });
});
