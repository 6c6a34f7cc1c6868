/** The simulated pod itself (src/testing/pod.ts), on the busybox test base (Cmd ["sh"], no entrypoint). */
import assert from 'node:assert/strict';
import { readdir, readFile, stat, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { busyboxBase } from '../../src/testing/bases.js';
import { runInPod, shq, unpackImage, type UnpackedImage } from '../../src/testing/pod.js';
import { tempDir, type TempDir } from '../../src/testing/tmp.js';

let image: UnpackedImage;
let work: TempDir;

before(async () => {
  const base = await busyboxBase();
  image = await unpackImage(base.ociDir, base.tag);
  work = await tempDir('pod-test');
});
after(async () => {
  await image?.cleanup();
  await work?.cleanup();
});

const sh = (script: string) => ['sh', '-c', script];

async function processesWithArg(arg: string): Promise<number> {
  let n = 0;
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').includes(arg)) n++;
  }
  return n;
}

describe('runInPod', () => {
  test('command/args follow pod semantics and the command is PID 1', async () => {
    const cases: Array<{ name: string; command?: string[]; args?: string[]; want: string }> = [
      // argv[0] is the resolved path (see resolveInImage), where runc would keep "sh".
      { name: 'args replace CMD', args: sh('echo "$$ $0"'), want: '1 /bin/sh\n' },
      { name: 'command replaces ENTRYPOINT, args follow it', command: ['/bin/echo'], args: ['a', 'b'], want: 'a b\n' },
      { name: 'command alone drops CMD', command: ['/bin/echo'], want: '\n' },
      { name: 'a bare name is found on the image PATH', command: ['printf'], args: ['%s|', 'x', 'y'], want: 'x|y|' },
    ];
    for (const c of cases) {
      const r = await runInPod({ image, ...(c.command ? { command: c.command } : {}), ...(c.args ? { args: c.args } : {}) });
      assert.equal(r.code, 0, `${c.name}: ${r.stderr}`);
      assert.equal(r.stdout, c.want, c.name);
    }
  });

  test('environment: the image Env, then the pod env; HOSTNAME; nothing from the host', async () => {
    process.env.GANTRY_POD_TEST_LEAK = 'host';
    try {
      const r = await runInPod({ image, env: { FOO: 'bar baz', PATH: '/bin' }, hostname: 'my-pod', args: sh('env | sort; hostname; cat /etc/hostname') });
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.trim().split('\n');
      assert.ok(lines.includes('FOO=bar baz'));
      assert.ok(lines.includes('PATH=/bin'));
      assert.ok(lines.includes('HOSTNAME=my-pod'));
      assert.equal(lines.filter((l) => l === 'my-pod').length, 2, r.stdout);
      assert.ok(!r.stdout.includes('GANTRY_POD_TEST_LEAK'));
    } finally {
      delete process.env.GANTRY_POD_TEST_LEAK;
    }
  });

  test('exit code, stdin and working directory', async () => {
    const r = await runInPod({ image, workingDir: '/srv/app', input: 'from stdin', args: sh('pwd; cat; exit 7') });
    assert.equal(r.code, 7);
    assert.equal(r.stdout, '/srv/app\nfrom stdin');
  });

  test('writes go to a fresh overlay: the next pod and the unpacked image never see them', async () => {
    const first = await runInPod({ image, args: sh('echo x > /etc/pod-write && rm /etc/passwd && ls /etc') });
    assert.equal(first.code, 0, first.stderr);
    assert.doesNotMatch(first.stdout, /^passwd$/m);
    const second = await runInPod({ image, args: sh('test -e /etc/pod-write && echo leaked; cat /etc/passwd | head -1') });
    assert.equal(second.stdout, 'root:x:0:0:root:/root:/bin/sh\n');
    await assert.rejects(stat(join(image.rootfs, 'etc/pod-write')));
  });

  test('mounts: read-write ones reach the host, read-only ones refuse writes', async () => {
    const rw = join(work.path, 'rw');
    const ro = join(work.path, 'ro');
    await mkdir(rw);
    await mkdir(ro);
    await writeFile(join(work.path, 'single-file'), 'one file\n');
    const r = await runInPod({
      image,
      mounts: [
        { host: rw, path: '/data/rw' },
        { host: ro, path: '/data/ro', readOnly: true },
        { host: join(work.path, 'single-file'), path: '/data/file.txt', readOnly: true },
      ],
      args: sh('echo out > /data/rw/result; echo nope > /data/ro/x; echo "ro=$?"; cat /data/file.txt'),
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await readFile(join(rw, 'result'), 'utf8'), 'out\n');
    assert.deepEqual(await readdir(ro), []);
    assert.match(r.stdout, /^ro=[1-9]/m);
    assert.match(r.stdout, /^one file$/m);
  });

  test('network: host shares the interfaces, none has only loopback', async () => {
    const names = (text: string) => text.split('\n').slice(2).map((l) => l.split(':')[0]!.trim()).filter(Boolean).sort();
    const host = names(await readFile('/proc/net/dev', 'utf8'));
    const shared = await runInPod({ image, network: 'host', args: ['cat', '/proc/net/dev'] });
    const none = await runInPod({ image, network: 'none', args: ['cat', '/proc/net/dev'] });
    assert.deepEqual(names(shared.stdout), host);
    assert.deepEqual(names(none.stdout), ['lo']);
  });

  test('a timeout kills every process of the pod', async () => {
    const marker = '31.25';
    const t0 = Date.now();
    const r = await runInPod({ image, timeoutMs: 300, args: sh(`sleep ${marker} & sleep ${marker}`) });
    assert.ok(Date.now() - t0 < 10_000);
    assert.equal(r.code, 137);
    // SIGKILL of the namespace's init takes its other processes with it, but not synchronously.
    for (let i = 0; i < 50 && (await processesWithArg(marker)) > 0; i++) await new Promise((res) => setTimeout(res, 100));
    assert.equal(await processesWithArg(marker), 0);
  });

  test('an unknown command fails before anything starts', async () => {
    await assert.rejects(runInPod({ image, command: ['no-such-tool'] }), /executable file not found/);
  });

  test('shq quotes anything for /bin/sh', async () => {
    const nasty = `it's "$HOME" \`id\` \\ ;|&`;
    const r = await runInPod({ image, args: sh(`printf %s ${shq(nasty)}`) });
    assert.equal(r.stdout, nasty);
  });
});
