import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { writeLayer, type LayerEntry } from '../archive/index.js';
import { diffUpperDir } from '../fs/diff/index.js';
import { isGantryError } from '../util/errors.js';
import { run } from '../testing/exec.js';
import { tempDir, type TempDir } from '../testing/tmp.js';
import { CA_BUNDLE_FILE, EXTRA_CA_FILE } from './dev-dir.js';
import { createSandbox, detectSandbox } from './detect.js';
import { createNsSandbox } from './ns-sandbox.js';
import type { RunResult, RunSandbox, RunSpec } from './types.js';

/** A busybox-static rootfs with applet symlinks, /etc and a CA bundle, built once. */
async function makeBusyboxRootfs(dir: string): Promise<void> {
  mkdirSync(join(dir, 'bin'), { recursive: true });
  copyFileSync('/bin/busybox', join(dir, 'bin', 'busybox'));
  await run('chroot', [dir, '/bin/busybox', '--install', '-s', '/bin'], { check: true });
  mkdirSync(join(dir, 'etc', 'ssl', 'certs'), { recursive: true });
  writeFileSync(join(dir, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(join(dir, 'etc', 'group'), 'root:x:0:\n');
  writeFileSync(join(dir, 'etc', 'ssl', 'certs', 'ca-certificates.crt'), 'IMAGE-BUNDLE\n');
  mkdirSync(join(dir, 'tmp'), { mode: 0o1777 });
  await run('chmod', ['1777', join(dir, 'tmp')], { check: true });
}

/** Every path in a directory tree, relative, sorted. */
function listTree(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const rel = prefix + e.name;
    out.push(rel);
    if (e.isDirectory()) out.push(...listTree(join(dir, e.name), rel + '/'));
  }
  return out;
}

async function diffNames(upper: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of diffUpperDir(upper)) out.push(`${e.header.type} ${e.header.name}${e.header.linkname ? ' -> ' + e.header.linkname : ''}`);
  return out;
}

function mountsMentioning(text: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(text));
}

/** Host processes whose command line contains `needle` (as NUL-separated argv). */
function processesWith(needle: string): number[] {
  const found: number[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').includes(needle)) found.push(Number(pid));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

describe('ns sandbox (root, overlayfs)', () => {
  let tmp: TempDir;
  let rootfs: string;
  let n = 0;
  const open: RunSandbox[] = [];

  before(async () => {
    tmp = await tempDir('ns-sandbox');
    rootfs = join(tmp.path, 'rootfs');
    await makeBusyboxRootfs(rootfs);
    writeFileSync(join(tmp.path, 'resolv.conf'), 'nameserver 192.0.2.53\n');
    writeFileSync(join(tmp.path, 'hosts'), '127.0.0.1 localhost gantry-test\n');
  });
  after(async () => {
    for (const s of open) await s.close();
    await tmp.cleanup();
  });

  async function layer(lowerDirs = [rootfs], network = true) {
    const dir = join(tmp.path, `layer-${++n}`);
    const upper = join(dir, 'upper');
    const sandbox = await createNsSandbox({
      lowerDirs,
      upperDir: upper,
      workDir: join(dir, 'work'),
      mergedDir: join(dir, 'merged'),
      // Bound files are busy mount points: a RUN could not remove /etc with them in place.
      resolvConf: network ? join(tmp.path, 'resolv.conf') : undefined,
      hosts: network ? join(tmp.path, 'hosts') : undefined,
      stateDir: tmp.path,
    });
    open.push(sandbox);
    return { upper, dir, sandbox, merged: join(dir, 'merged') };
  }

  function spec(script: string | string[], extra: Partial<RunSpec> = {}): RunSpec {
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

  async function runOut(sandbox: RunSandbox, s: RunSpec): Promise<RunResult & { stdout: string }> {
    let stdout = '';
    const r = await sandbox.run({ ...s, stdout: (c) => (stdout += c.toString()) });
    return { ...r, stdout };
  }

  it('is detected as usable here and picked first; every backend reports itself implemented', async () => {
    const d = await detectSandbox({ stateDir: tmp.path });
    assert.equal(d.kind, 'ns', JSON.stringify(d.checks));
    assert.deepEqual(d.checks.map((c) => [c.kind, c.implemented]), [['ns', true], ['rootless', true], ['inplace', true]]);
    // On the host, rootless needs the builder re-executed in its user namespace first.
    await assert.rejects(
      createSandbox('rootless', { lowerDirs: [rootfs], upperDir: '/x/u', workDir: '/x/w', mergedDir: '/x/m' }),
      (err: unknown) => isGantryError(err, 'UNSUPPORTED') && (err as Error).message.includes('rootless'),
    );
  });

  it('captures exactly the file a RUN writes: no mount points, /dev, /etc or /proc in the upperdir', async () => {
    const { upper, sandbox, merged } = await layer();
    const lowerTimes = () => ['', 'etc', 'bin'].map((d) => statSync(join(rootfs, d)).mtimeMs + ':' + statSync(join(rootfs, d)).ctimeMs);
    const before = lowerTimes();
    const r = await sandbox.run(spec('echo hi > /a && cat /etc/resolv.conf /etc/hosts > /dev/null && ls /proc/self /dev/pts >/dev/null'));
    assert.equal(r.exitCode, 0, r.tail.join('\n'));
    assert.deepEqual(listTree(upper), ['a']);
    assert.equal(readFileSync(join(upper, 'a'), 'utf8'), 'hi\n');
    assert.deepEqual(readdirSync(merged), [], 'the merged dir is only mounted inside the RUN');
    assert.deepEqual(mountsMentioning(tmp.path), []);
    assert.deepEqual(await diffNames(upper), ['file a']);
    assert.deepEqual(lowerTimes(), before, 'the lower layer is never written');
  });

  it('binds resolv.conf and hosts read-only and provides /dev nodes, devpts and proc', async () => {
    const { upper, sandbox } = await layer();
    const r = await runOut(sandbox, spec([
      'cat /etc/resolv.conf /etc/hosts',
      'echo x > /etc/resolv.conf 2>/dev/null && echo resolv-writable',
      'head -c 4 /dev/zero | wc -c',
      'test -c /dev/null && test -L /dev/ptmx && test -d /dev/pts && echo devices-ok',
      'grep -c devpts /proc/mounts',
    ].join('; ')));
    assert.equal(r.exitCode, 0, r.tail.join('\n'));
    assert.equal(r.stdout, 'nameserver 192.0.2.53\n127.0.0.1 localhost gantry-test\n4\ndevices-ok\n1\n');
    assert.deepEqual(listTree(upper), []);
  });

  it('records a deleted file as a whiteout', async () => {
    const { upper, sandbox } = await layer();
    assert.equal((await sandbox.run(spec('rm /bin/ls'))).exitCode, 0);
    assert.deepEqual(await diffNames(upper), ['dir bin', 'file bin/.wh.ls']);
  });

  it('records a replaced directory as opaque', async () => {
    const { upper, sandbox } = await layer([rootfs], false);
    const r = await sandbox.run(spec('rm -rf /etc && mkdir /etc && echo x > /etc/y'));
    assert.equal(r.exitCode, 0, r.tail.join('\n'));
    assert.deepEqual(await diffNames(upper), ['dir etc', 'file etc/.wh..wh..opq', 'file etc/y']);
  });

  it('keeps hard links, setuid bits and owners', async () => {
    const { upper, sandbox } = await layer();
    const r = await sandbox.run(spec('echo data > /f1 && ln /f1 /f2 && echo x > /s && chown 12:34 /s && chmod 4755 /s'));
    assert.equal(r.exitCode, 0, r.tail.join('\n'));
    const entries: LayerEntry[] = [];
    for await (const e of diffUpperDir(upper)) entries.push(e);
    const h = new Map(entries.map((e) => [e.header.name, e.header]));
    assert.deepEqual([...h.keys()], ['f1', 'f2', 's']);
    assert.equal(h.get('f2')!.type, 'hardlink');
    assert.equal(h.get('f2')!.linkname, 'f1');
    assert.equal(h.get('s')!.mode, 0o4755);
    assert.deepEqual([h.get('s')!.uid, h.get('s')!.gid], [12, 34]);
  });

  it('copies a renamed lower directory whole (redirect_dir=off) so the layer stands alone', async () => {
    const { upper, sandbox } = await layer([rootfs], false);
    const r = await sandbox.run(spec('mv /etc /etc2'));
    assert.equal(r.exitCode, 0, r.tail.join('\n'));
    const names = await diffNames(upper);
    assert.ok(names.includes('file .wh.etc'), names.join('\n'));
    assert.ok(names.includes('file etc2/passwd'), names.join('\n'));
    assert.ok(names.includes('file etc2/ssl/certs/ca-certificates.crt'), names.join('\n'));
  });

  it('reports a command that cannot be executed as exit code 127', async () => {
    const { sandbox } = await layer();
    const r = await sandbox.run(spec(['/no/such/program', 'arg']));
    assert.equal(r.exitCode, 127);
    assert.match(r.tail.join('\n'), /no\/such\/program/);
  });

  it('returns a non-zero exit code with the last output lines instead of throwing', async () => {
    const { sandbox } = await layer();
    const lines: string[] = [];
    const r = await sandbox.run(spec('for i in $(seq 1 80); do echo line$i; done; echo oops >&2; exit 3', { stderr: (c) => lines.push(c.toString()) }));
    assert.equal(r.exitCode, 3);
    assert.equal(r.signal, undefined);
    assert.equal(r.tail.length, 50);
    assert.equal(r.tail[r.tail.length - 1], 'oops');
    assert.equal(r.tail[0], 'line32');
    assert.deepEqual(lines, ['oops\n']);
  });

  it('gives the command exactly the environment it was given', async () => {
    const { sandbox } = await layer();
    const env = ['PATH=/bin', 'FOO=bar baz', 'EMPTY=', 'WEIRD=a=b\\c$d', 'HOME=/root'];
    const r = await runOut(sandbox, spec(['/bin/env'], { env }));
    assert.equal(r.exitCode, 0, r.tail.join('\n'));
    assert.deepEqual(r.stdout.trimEnd().split('\n').sort(), [...env].sort());
  });

  it('runs as the given uid, gid and supplementary groups', async () => {
    const { sandbox } = await layer();
    const r = await runOut(sandbox, spec('id -u; id -g; id -G; touch /tmp/owned && stat -c %u:%g /tmp/owned', { user: { uid: 1000, gid: 1000, groups: [1000, 27] } }));
    assert.equal(r.exitCode, 0, r.tail.join('\n'));
    const [uid, gid, groups, owner] = r.stdout.trim().split('\n');
    assert.equal(uid, '1000');
    assert.equal(gid, '1000');
    assert.deepEqual(groups.split(' ').sort(), ['1000', '27']);
    assert.equal(owner, '1000:1000');
  });

  it('starts in the working directory, creating it in the layer when missing', async () => {
    const { upper, sandbox } = await layer();
    const r = await runOut(sandbox, spec('pwd; echo x > here', { cwd: '/srv/app' }));
    assert.equal(r.exitCode, 0, r.tail.join('\n'));
    assert.equal(r.stdout, '/srv/app\n');
    assert.deepEqual(await diffNames(upper), ['dir srv', 'dir srv/app', 'file srv/app/here']);
  });

  it('has only a loopback interface, up, with network none', async () => {
    const { sandbox } = await layer();
    const r = await runOut(sandbox, spec("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; cat /sys/class/net/lo/operstate /sys/class/net/lo/flags", { network: 'none' }));
    assert.equal(r.exitCode, 0, r.tail.join('\n'));
    const [ifaces, , flags] = [r.stdout.trim().split('\n').slice(0, -2), null, r.stdout.trim().split('\n').at(-1)!];
    assert.deepEqual(ifaces, ['lo']);
    assert.equal(Number(flags) & 1, 1, 'IFF_UP');
    const host = await runOut(sandbox, spec("tail -n +3 /proc/net/dev | wc -l", { network: 'host' }));
    assert.ok(Number(host.stdout.trim()) >= 1);
  });

  it('cancels a RUN within a second, leaving no mounts and no processes', async () => {
    const { upper, sandbox } = await layer();
    const marker = String(40_000 + (process.pid % 20_000));
    const ac = new AbortController();
    const started = sandbox.run(spec(`sleep ${marker} & sleep ${marker}`, { signal: ac.signal }));
    for (let i = 0; i < 100 && processesWith(`sleep ${marker}`).length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    // The shell's own command line mentions the marker too (unless it execs the last sleep).
    assert.ok(processesWith(`sleep ${marker}`).length >= 2, 'both sleeps started');
    const t0 = Date.now();
    ac.abort();
    await assert.rejects(started, (err: unknown) => isGantryError(err, 'ABORTED'));
    assert.ok(Date.now() - t0 < 1000, `took ${Date.now() - t0} ms`);
    assert.deepEqual(processesWith(`sleep ${marker}`), []);
    assert.deepEqual(mountsMentioning(tmp.path), []);
    assert.deepEqual(listTree(upper), []);
  });

  it('kills a running RUN when the sandbox is closed', async () => {
    const { sandbox } = await layer();
    const marker = String(60_000 + (process.pid % 5_000));
    const started = sandbox.run(spec(`sleep ${marker}`));
    const outcome = started.then(() => undefined, (err: unknown) => err);
    for (let i = 0; i < 100 && processesWith(`sleep ${marker}`).length < 1; i++) await new Promise((r) => setTimeout(r, 20));
    await sandbox.close();
    assert.ok(isGantryError(await outcome, 'ABORTED'));
    assert.deepEqual(processesWith(`sleep ${marker}`), []);
    await assert.rejects(sandbox.run(spec('true')), (err: unknown) => isGantryError(err, 'INTERNAL'));
  });

  it('reports a sandbox that cannot be set up as SANDBOX_FAILED, not as an exit code', async () => {
    const dir = join(tmp.path, `broken-${++n}`);
    const sandbox = await createNsSandbox({
      lowerDirs: [rootfs],
      upperDir: join(dir, 'upper'),
      workDir: join(dir, 'work'),
      mergedDir: join(dir, 'merged'),
      resolvConf: tmp.path, // a directory cannot be bound onto the file /etc/resolv.conf
      stateDir: tmp.path,
    });
    open.push(sandbox);
    await assert.rejects(sandbox.run(spec('true')), (err: unknown) => isGantryError(err, 'SANDBOX_FAILED') && /mount/.test((err as Error).message));
  });

  it('writes output to a stream sink', async () => {
    const { sandbox } = await layer();
    const chunks: Buffer[] = [];
    const sink = new Writable({ highWaterMark: 16, write: (c: Buffer, _e, cb) => { chunks.push(c); setTimeout(cb, 1); } });
    const r = await sandbox.run(spec('seq 1 2000', { stdout: sink }));
    assert.equal(r.exitCode, 0);
    const text = Buffer.concat(chunks).toString();
    assert.equal(text.split('\n').length, 2001);
    assert.ok(text.endsWith('1999\n2000\n'));
  });

  it('mounts a tmpfs whose contents never reach the layer', async () => {
    const { upper, sandbox } = await layer();
    const r = await runOut(sandbox, spec('echo x > /scratch/file && grep " /scratch " /proc/mounts | cut -d" " -f3', { mounts: [{ type: 'tmpfs', target: '/scratch', size: 1 << 20 }] }));
    assert.equal(r.exitCode, 0, r.tail.join('\n'));
    assert.equal(r.stdout, 'tmpfs\n');
    assert.deepEqual(listTree(upper), []);
  });

  it('mounts below /dev into the private /dev, never the image', async () => {
    const { upper, sandbox } = await layer();
    const r = await runOut(sandbox, spec('grep " /dev/shm " /proc/mounts | grep -o size=[0-9]*k', { mounts: [{ type: 'tmpfs', target: '/dev/shm', size: 2 << 20 }] }));
    assert.equal(r.exitCode, 0, r.tail.join('\n'));
    assert.equal(r.stdout, 'size=2048k\n');
    await assert.rejects(sandbox.run(spec('true', { mounts: [{ type: 'tmpfs', target: '/dev/fd/x' }] })), (e: unknown) => isGantryError(e, 'INVALID_ARGUMENT'));
    assert.deepEqual(listTree(upper), []);
  });

  it('makes a read-only bind mount readable but not writable', async () => {
    const { upper, sandbox } = await layer();
    const src = join(tmp.path, 'context');
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, 'in.txt'), 'from host\n');
    writeFileSync(join(tmp.path, 'secret'), 's3cret');
    const r = await runOut(sandbox, spec('cat /ctx/in.txt /run/secrets/token; echo; echo no > /ctx/new || echo write-failed', {
      mounts: [
        { type: 'bind', source: src, target: '/ctx', readonly: true },
        { type: 'bind', source: join(tmp.path, 'secret'), target: '/run/secrets/token', readonly: true },
      ],
    }));
    assert.equal(r.exitCode, 0, r.tail.join('\n'));
    assert.equal(r.stdout, 'from host\ns3cret\nwrite-failed\n');
    assert.equal(existsSync(join(src, 'new')), false);
    assert.deepEqual(listTree(upper), []);
  });

  it('keeps a cache mount between RUNs without putting it in the layer', async () => {
    const cache = join(tmp.path, 'cache-a');
    const first = await layer();
    const mounts = [{ type: 'cache' as const, source: cache, target: '/root/.cache' }];
    assert.equal((await first.sandbox.run(spec('echo kept > /root/.cache/x', { mounts }))).exitCode, 0);
    const second = await layer([first.upper, rootfs]);
    const r = await runOut(second.sandbox, spec('cat /root/.cache/x', { mounts }));
    assert.equal(r.stdout, 'kept\n');
    assert.deepEqual(listTree(first.upper), []);
    assert.deepEqual(listTree(second.upper), []);
    assert.equal(readFileSync(join(cache, 'x'), 'utf8'), 'kept\n');
  });

  it('resolves mount points through image symlinks instead of the host', async () => {
    // /var/run -> /run in the image: the secret must land in the image's /run, never the host's.
    const lower = join(tmp.path, 'symlinked');
    mkdirSync(join(lower, 'var'), { recursive: true });
    const { symlinkSync } = await import('node:fs');
    symlinkSync('/run', join(lower, 'var', 'run'));
    writeFileSync(join(tmp.path, 'secret2'), 'abc');
    const { upper, sandbox } = await layer([lower, rootfs]);
    const r = await runOut(sandbox, spec('cat /run/s; test -L /var/run && echo still-a-link', {
      mounts: [{ type: 'bind', source: join(tmp.path, 'secret2'), target: '/var/run/s', readonly: true }],
    }));
    assert.equal(r.exitCode, 0, r.tail.join('\n'));
    assert.equal(r.stdout, 'abcstill-a-link\n');
    assert.equal(readlinkSync(join(lower, 'var', 'run')), '/run');
    assert.deepEqual(listTree(upper), []);
  });

  it('offers extra CA files in /dev without writing them anywhere in the image', async () => {
    const { upper, sandbox } = await layer();
    writeFileSync(join(tmp.path, 'extra.pem'), 'EXTRA-CA');
    const r = await runOut(sandbox, spec(`cat ${EXTRA_CA_FILE}; echo ---; cat ${CA_BUNDLE_FILE}`, { extraCaFiles: [join(tmp.path, 'extra.pem')] }));
    assert.equal(r.exitCode, 0, r.tail.join('\n'));
    assert.equal(r.stdout, 'EXTRA-CA\n---\nIMAGE-BUNDLE\nEXTRA-CA\n');
    assert.deepEqual(listTree(upper), []);
  });

  it('runs twice in one sandbox and the diff becomes a layer tar lists', async () => {
    const { upper, sandbox, dir } = await layer();
    assert.equal((await sandbox.run(spec('mkdir -p /opt/app && echo 1 > /opt/app/one && rm /bin/vi'))).exitCode, 0);
    assert.equal((await sandbox.run(spec('echo 2 > two && ln -s one /opt/app/link', { cwd: '/opt/app' }))).exitCode, 0);
    const out = join(dir, 'layer.tar');
    await writeLayer(diffUpperDir(upper), out, { compression: 'none' });
    const listing = await run('tar', ['--numeric-owner', '-tvf', out], { check: true });
    const names = listing.stdout.trim().split('\n').map((l) => l.split(/\s+/).slice(5).join(' '));
    assert.deepEqual(names, ['bin/', 'bin/.wh.vi', 'opt/', 'opt/app/', 'opt/app/link -> one', 'opt/app/one', 'opt/app/two']);
  });
});
