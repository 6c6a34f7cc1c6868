import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { isGantryError } from '../util/errors.js';
import { run } from '../testing/exec.js';
import { tempDir, type TempDir } from '../testing/tmp.js';
import { APT_SANDBOX_CONF, createRootlessSandbox, kernelSupportsUserxattr } from './rootless-sandbox.js';
import { enterUserNamespace, isMapped, parseIdMap, parseSubIds, planUserNamespace, userNamespaceState, userNamespaceStateOf, USERNS_ENV } from './rootless-userns.js';
import type { FixtureCase, FixtureJob, FixtureResult } from './rootless.fixture.js';
import type { RunSpec } from './types.js';
import { grantSubIdRange, revokeSubIdRange } from '../testing/subids.js';

const FIXTURE = join(dirname(fileURLToPath(import.meta.url)), 'rootless.fixture.js');

describe('rootless helpers', () => {
  it('reads uid_map lines and tells the host, full and squashed namespaces apart', () => {
    const cases: Array<[string, string]> = [
      ['         0          0 4294967295\n', 'host'],
      ['         0       1001          1\n         1     300000      65536\n', 'full'],
      ['         0       1001          1\n', 'squashed'],
    ];
    for (const [text, state] of cases) assert.equal(userNamespaceStateOf(parseIdMap(text)), state, text);
    assert.equal(userNamespaceState(), 'host', 'the test runner itself is on the host');
    const map = parseIdMap('0 1001 1\n1 300000 65536\n');
    assert.deepEqual([0, 1, 65536, 65537].map((id) => isMapped(id, map)), [true, true, true, false]);
  });

  it('finds a subordinate range by user name or numeric id, first match, ignoring junk', () => {
    const text = '# comment\nalice:100000:65536\nbad line\n1005:300000:1000\nalice:500000:10\nzero:1:0\n';
    const cases: Array<[{ name: string; id: number }, { start: number; count: number } | undefined]> = [
      [{ name: 'alice', id: 1004 }, { start: 100000, count: 65536 }],
      [{ name: 'bob', id: 1005 }, { start: 300000, count: 1000 }],
      [{ name: 'carol', id: 1006 }, undefined],
      [{ name: 'zero', id: 1007 }, undefined],
    ];
    for (const [user, want] of cases) assert.deepEqual(parseSubIds(text, user), want, user.name);
  });

  it('plans the full mapping from the subid files, and squashes without them', async () => {
    const tmp = await tempDir('rootless-plan');
    try {
      const sub = join(tmp.path, 'subuid');
      writeFileSync(sub, 'root:400000:5000\n');
      const full = planUserNamespace({ subuid: sub, subgid: sub });
      assert.equal(full.mode, 'full');
      assert.deepEqual(full.unshareArgs, ['--user', '--map-user=0', '--map-group=0', '--map-users=400000,1,5000', '--map-groups=400000,1,5000']);
      const none = planUserNamespace({ subuid: join(tmp.path, 'missing'), subgid: sub });
      assert.equal(none.mode, 'squashed');
      assert.deepEqual(none.unshareArgs, ['--user', '--map-root-user']);
      assert.match(none.reason!, /has no range/);
    } finally {
      await tmp.cleanup();
    }
  });

  it('knows which kernels mount overlayfs in a user namespace', () => {
    const cases: Array<[string, boolean]> = [['5.10.0-21-amd64', false], ['5.11.0', true], ['6.1.0-18-cloud-amd64', true], ['4.19.0', false], ['garbage', false]];
    for (const [rel, want] of cases) assert.equal(kernelSupportsUserxattr(rel), want, rel);
  });

  it('does not re-execute a process that is already the re-executed one', async () => {
    assert.equal(await enterUserNamespace({ env: { [USERNS_ENV]: 'full' } }), undefined);
  });

  it('refuses to create the sandbox outside a user namespace, with a hint', async () => {
    await assert.rejects(
      createRootlessSandbox({ lowerDirs: ['/'], upperDir: '/nonexistent/u', workDir: '/nonexistent/w', mergedDir: '/nonexistent/m' }),
      (err: unknown) => isGantryError(err, 'UNSUPPORTED') && /enterUserNamespace/.test((err as { hint?: string }).hint ?? ''),
    );
  });
});

// --- As real unprivileged users ----------------------------------------------------------------

function sh(cmd: string, args: string[]): Promise<string> {
  return run(cmd, args, { check: true }).then((r) => r.stdout);
}

/** A busybox rootfs (with apt's config directory) owned by the user: root inside the namespace. */
async function makeRootfs(dir: string, owner: string): Promise<void> {
  mkdirSync(join(dir, 'bin'), { recursive: true });
  copyFileSync('/bin/busybox', join(dir, 'bin', 'busybox'));
  await sh('chroot', [dir, '/bin/busybox', '--install', '-s', '/bin']);
  mkdirSync(join(dir, 'etc', 'apt', 'apt.conf.d'), { recursive: true });
  mkdirSync(join(dir, 'home', 'app'), { recursive: true });
  mkdirSync(join(dir, 'tmp'));
  writeFileSync(join(dir, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n');
  writeFileSync(join(dir, 'etc', 'group'), 'root:x:0:\napp:x:1000:\n');
  await sh('chown', ['-R', `${owner}:${owner}`, dir]);
  chmodSync(join(dir, 'tmp'), 0o1777);
}

interface TestUser {
  name: string;
  uid: number;
  gid: number;
  base?: number;
  dir: string;
  cleanup(): Promise<void>;
}

async function createUser(tmp: string, withSubIds: boolean): Promise<TestUser> {
  const name = `gantryrl-${randomBytes(4).toString('hex')}${withSubIds ? 'f' : 's'}`;
  // -K SUB_*_COUNT=0: useradd would otherwise allocate ranges itself on some systems.
  await sh('useradd', ['-m', '-K', 'SUB_UID_COUNT=0', '-K', 'SUB_GID_COUNT=0', name]);
  let base: number | undefined;
  if (withSubIds) {
    base = grantSubIdRange(name);
  }
  const uid = Number((await sh('id', ['-u', name])).trim());
  const gid = Number((await sh('id', ['-g', name])).trim());
  const dir = join(tmp, name);
  mkdirSync(dir);
  await sh('chown', [`${uid}:${gid}`, dir]);
  return {
    name, uid, gid, base, dir,
    async cleanup() {
      revokeSubIdRange(name);
      await run('pkill', ['-KILL', '-u', String(uid)]);
      await run('userdel', ['-r', '-f', name]);
    },
  };
}

interface FixtureOutput {
  state: string;
  uidMap: Array<{ inside: number; outside: number; count: number }>;
  detection: { kind?: string; checks: Array<{ kind: string; usable: boolean; reason: string }> };
  results: FixtureResult[];
  logs: string[];
}

function runFixture(user: TestUser, cases: FixtureCase[]): Promise<FixtureOutput> {
  const job: FixtureJob = { dir: user.dir, rootfs: join(user.dir, 'rootfs'), cases };
  const jobFile = join(user.dir, 'job.json');
  writeFileSync(jobFile, JSON.stringify(job));
  return new Promise((resolve, reject) => {
    execFile('setpriv', [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--init-groups', '--', process.execPath, FIXTURE, jobFile], {
      cwd: user.dir,
      env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' },
      timeout: 120_000,
      maxBuffer: 16 << 20,
    }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`fixture failed: ${err.message}\n${stderr}`));
      const out = JSON.parse(stdout) as Omit<FixtureOutput, 'logs'>;
      resolve({ ...out, logs: String(stderr).split('\n').filter((l) => l.startsWith('LOG ')) });
    });
  });
}

function spec(script: string | string[], extra: Partial<RunSpec> = {}): FixtureCase['spec'] {
  return {
    argv: Array.isArray(script) ? script : ['/bin/sh', '-c', script],
    env: ['PATH=/bin'],
    cwd: '/',
    user: { uid: 0, gid: 0, groups: [] },
    network: 'default',
    mounts: [],
    ...extra,
  };
}

const names = (r: FixtureResult) => (r.entries ?? []).map((e) => `${e.type} ${e.name}`);
const entry = (r: FixtureResult, name: string) => r.entries?.find((e) => e.name === name);
function ok(r: FixtureResult): FixtureResult {
  assert.equal(r.error, undefined, `${r.name}: ${JSON.stringify(r.error)}`);
  assert.equal(r.exitCode, 0, `${r.name}: ${r.tail?.join('\n')}`);
  return r;
}

describe('rootless sandbox as an unprivileged user with a subordinate id range', () => {
  let tmp: TempDir;
  let user: TestUser;
  let out: FixtureOutput;
  const byName = (n: string) => out.results.find((r) => r.name === n)!;

  before(async () => {
    tmp = await tempDir('rootless-full');
    chmodSync(tmp.path, 0o755);
    user = await createUser(tmp.path, true);
    await makeRootfs(join(user.dir, 'rootfs'), user.name);
    // A base-image directory owned by uid 1000, as an unpack inside the namespace leaves it.
    await sh('chown', [`${user.base! + 999}:${user.base! + 999}`, join(user.dir, 'rootfs', 'home', 'app')]);
    writeFileSync(join(user.dir, 'resolv.conf'), 'nameserver 192.0.2.53\n');
    out = await runFixture(user, [
      { name: 'write', spec: spec('echo hi > /a') },
      { name: 'chown', spec: spec('touch /f && chown 1000:1000 /f && stat -c %u:%g /home/app') },
      { name: 'whiteout', spec: spec('rm /bin/ls') },
      { name: 'opaque', spec: spec('rm -rf /etc && mkdir /etc && echo x > /etc/y') },
      { name: 'exit', spec: spec('echo oops >&2; exit 3') },
      { name: 'env', spec: spec(['/bin/env'], { env: ['PATH=/bin', 'FOO=bar baz', 'EMPTY=', 'WEIRD=a=b\\c$d'] }) },
      { name: 'user', spec: spec('id -u; id -g; id -G; touch /tmp/owned', { user: { uid: 1000, gid: 1000, groups: [1000, 27] } }) },
      {
        name: 'mounts',
        resolvConf: join(user.dir, 'resolv.conf'),
        spec: spec(`cat /etc/resolv.conf; test -c /dev/null && test -d /sys/class/net && echo sys-ok; grep -c devpts /proc/mounts; test -e ${APT_SANDBOX_CONF} && echo apt-bound || echo apt-free`),
      },
      { name: 'none', spec: spec("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '", { network: 'none' }) },
      { name: 'chained', lowers: ['write', 'rootfs'], spec: spec('cat /a && rm /a') },
      { name: 'private', spec: spec('mkdir -p /var/cache/p && echo secret > /var/cache/p/f && chmod 600 /var/cache/p/f && chown -R 42:42 /var/cache/p && chmod 700 /var/cache/p') },
      { name: 'unmapped', spec: spec('true', { user: { uid: 70000, gid: 0, groups: [] } }) },
      { name: 'bench', bench: 15, spec: spec('true') },
    ]);
  });
  after(async () => {
    await user?.cleanup();
    await tmp?.cleanup();
  });

  it('re-executes into a user namespace mapping uid 0 to the user and 1.. to the subordinate range', () => {
    assert.equal(out.state, 'full');
    assert.deepEqual(out.uidMap, [{ inside: 0, outside: user.uid, count: 1 }, { inside: 1, outside: user.base!, count: 65536 }]);
    assert.deepEqual(out.logs.filter((l) => l.startsWith('LOG warn')), []);
  });

  it('is what detection picks inside the namespace, where plain ns cannot mount', () => {
    assert.equal(out.detection.kind, 'rootless', JSON.stringify(out.detection));
    assert.equal(out.detection.checks.find((c) => c.kind === 'ns')?.usable, false);
  });

  it('records a file written as root in the container as 0:0', () => {
    const r = ok(byName('write'));
    assert.deepEqual(names(r), ['file a']);
    assert.deepEqual([entry(r, 'a')!.uid, entry(r, 'a')!.gid], [0, 0]);
  });

  it('records chown 1000:1000 as uid 1000 and sees base-image owners from the subordinate range', () => {
    const r = ok(byName('chown'));
    assert.equal(r.stdout, '1000:1000\n');
    assert.deepEqual([entry(r, 'f')!.uid, entry(r, 'f')!.gid], [1000, 1000]);
  });

  it('records a deleted file as a whiteout', () => {
    assert.deepEqual(names(ok(byName('whiteout'))), ['dir bin', 'file bin/.wh.ls']);
  });

  it('records a replaced directory as opaque from user.overlay.opaque, without overlay xattrs in the layer', () => {
    const r = ok(byName('opaque'));
    assert.deepEqual(names(r), ['dir etc', 'file etc/.wh..wh..opq', 'file etc/y']);
    assert.deepEqual(r.entries!.flatMap((e) => e.xattrs), []);
  });

  it('returns the exit code and output tail', () => {
    const r = byName('exit');
    assert.equal(r.exitCode, 3);
    assert.deepEqual(r.tail, ['oops']);
  });

  it('gives the command exactly its environment', () => {
    const r = ok(byName('env'));
    assert.deepEqual(r.stdout!.trimEnd().split('\n').sort(), ['EMPTY=', 'FOO=bar baz', 'PATH=/bin', 'WEIRD=a=b\\c$d']);
  });

  it('runs as a mapped uid with its groups, and its files keep that owner', () => {
    const r = ok(byName('user'));
    const [uid, gid, groups] = r.stdout!.trim().split('\n');
    assert.deepEqual([uid, gid, groups.split(' ').sort().join(' ')], ['1000', '1000', '1000 27']);
    const owned = entry(r, 'tmp/owned')!;
    assert.deepEqual([owned.uid, owned.gid], [1000, 1000]);
  });

  it('provides resolv.conf, /dev, devpts, proc and /sys without capturing them, and no apt override', () => {
    const r = ok(byName('mounts'));
    assert.equal(r.stdout, 'nameserver 192.0.2.53\nsys-ok\n1\napt-free\n');
    assert.deepEqual(names(r), []);
  });

  it('has only loopback with network none', () => {
    assert.equal(ok(byName('none')).stdout, 'lo\n');
  });

  it('stacks an earlier upperdir as a lower layer', () => {
    const r = ok(byName('chained'));
    assert.equal(r.stdout, 'hi\n');
    assert.deepEqual(names(r), ['file .wh.a']);
  });

  it('diffs (inside the namespace) what another uid wrote in a 0700 directory, like apt as _apt', () => {
    const r = ok(byName('private'));
    assert.deepEqual(names(r), ['dir var', 'dir var/cache', 'dir var/cache/p', 'file var/cache/p/f']);
    const f = entry(r, 'var/cache/p/f')!;
    assert.deepEqual([f.uid, f.gid, f.mode, f.bytes], [42, 42, 0o600, 7]);
    assert.deepEqual([entry(r, 'var/cache/p')!.uid, entry(r, 'var/cache/p')!.mode], [42, 0o700]);
  });

  it('refuses a uid outside the mapped range before running anything', () => {
    assert.equal(byName('unmapped').error?.code, 'UNSUPPORTED');
  });

  it('costs little per RUN', () => {
    const d = [...byName('bench').durationsMs!].sort((a, b) => a - b);
    assert.equal(d.length, 15);
    const median = d[7];
    // Generous bound for a shared 2-core machine; the measured median is in the report.
    assert.ok(median < 250, `median ${median} ms`);
    process.stderr.write(`# rootless per-RUN median ${median.toFixed(1)} ms (min ${d[0].toFixed(1)})\n`);
  });
});

describe('rootless sandbox as an unprivileged user without subordinate ids (squashed)', () => {
  let tmp: TempDir;
  let user: TestUser;
  let out: FixtureOutput;
  const byName = (n: string) => out.results.find((r) => r.name === n)!;

  before(async () => {
    tmp = await tempDir('rootless-squash');
    chmodSync(tmp.path, 0o755);
    user = await createUser(tmp.path, false);
    await makeRootfs(join(user.dir, 'rootfs'), user.name);
    out = await runFixture(user, [
      { name: 'write', spec: spec('echo hi > /a && touch /f && chown 1000 /f 2>/dev/null || echo chown-failed') },
      { name: 'apt', spec: spec(`cat ${APT_SANDBOX_CONF} && echo x > ${APT_SANDBOX_CONF} 2>/dev/null || echo read-only`) },
      { name: 'user', spec: spec('id -u; id -g', { user: { uid: 1000, gid: 1000, groups: [1000] } }) },
      { name: 'whiteout', spec: spec('rm /bin/ls') },
      { name: 'bench', bench: 5, spec: spec('true') },
    ]);
  });
  after(async () => {
    await user?.cleanup();
    await tmp?.cleanup();
  });

  it('warns loudly that ownership is squashed, when entering and when creating the sandbox', () => {
    assert.equal(out.state, 'squashed');
    assert.deepEqual(out.uidMap, [{ inside: 0, outside: user.uid, count: 1 }]);
    const warnings = out.logs.filter((l) => l.includes('SQUASHED OWNERSHIP'));
    assert.equal(warnings.length, 2, out.logs.join('\n'));
    assert.match(warnings[0], /has no range in \/etc\/subuid/);
  });

  it('records files as 0:0, and chown to another id fails', () => {
    const r = ok(byName('write'));
    assert.equal(r.stdout, 'chown-failed\n');
    assert.deepEqual(names(r), ['file a', 'file f']);
    for (const e of r.entries!) assert.deepEqual([e.uid, e.gid], [0, 0], e.name);
  });

  it('binds the apt sandbox override read-only, never into the layer', () => {
    const r = ok(byName('apt'));
    assert.match(r.stdout!, /^APT::Sandbox::User "root";$/m);
    assert.match(r.stdout!, /read-only\n$/);
    assert.deepEqual(names(r), []);
  });

  it('runs a non-root USER as root, with a warning', () => {
    assert.equal(ok(byName('user')).stdout, '0\n0\n');
    assert.ok(out.logs.some((l) => l.startsWith('LOG warn') && l.includes('instead of 1000:1000')), out.logs.join('\n'));
  });

  it('records whiteouts', () => {
    assert.deepEqual(names(ok(byName('whiteout'))), ['dir bin', 'file bin/.wh.ls']);
    assert.equal(byName('bench').durationsMs!.length, 5);
  });
});
