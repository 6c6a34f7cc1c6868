/**
 * The inplace sandbox where it is meant to run: inside a simulated pod (src/testing/pod.ts: a
 * fresh overlay as `/`, Docker's default capabilities, no CAP_SYS_ADMIN). Never on the host's `/`.
 *
 * The pod's image is a minimal rootfs made here: this node, patchelf'd to its own glibc under
 * /gantry/lib (as the executor image does), and a probe script under /gantry. The repository is
 * bind-mounted read-only at its host path (so the probe imports dist/), the base image layouts at
 * /kaniko/bases: both are mount points, which the sandbox must leave alone.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { busyboxBase, debianBase, type BaseImage } from '../testing/bases.js';
import { run } from '../testing/exec.js';
import { repoRoot } from '../testing/paths.js';
import { runInPod, type UnpackedImage } from '../testing/pod.js';
import { tempDir, type TempDir } from '../testing/tmp.js';

let work: TempDir;
let image: UnpackedImage;
let busybox: BaseImage;

/** Runs inside the pod: argv[2] is a JSON plan; prints one JSON line of results. */
const PROBE = `
import { createReadStream, existsSync, readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
const dist = process.env.GANTRY_DIST;
const { createInplaceSandbox } = await import(dist + '/src/run/index.js');
const { decompressAuto, readTar } = await import(dist + '/src/archive/index.js');
const plan = JSON.parse(process.argv[2]);
const out = { runs: [] };
const sb = createInplaceSandbox({ logger: { log: () => {} } });
out.ignorePaths = sb.ignorePaths;

function layersOf(layout) {
  const blob = (d) => join(layout, 'blobs', ...d.split(':'));
  let desc = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')).manifests[0];
  while (/index|list/.test(desc.mediaType)) desc = JSON.parse(readFileSync(blob(desc.digest), 'utf8')).manifests.find((m) => m.platform?.architecture === 'amd64') ?? JSON.parse(readFileSync(blob(desc.digest), 'utf8')).manifests[0];
  return JSON.parse(readFileSync(blob(desc.digest), 'utf8')).layers.map((l) => blob(l.digest));
}
const t0 = performance.now();
for (const layer of layersOf(plan.layout)) {
  const { output } = await decompressAuto(createReadStream(layer));
  await sb.unpack(readTar(output));
}
out.unpackMs = performance.now() - t0;
if (plan.secret) { mkdirSync('/kaniko/in', { recursive: true }); writeFileSync('/kaniko/in/secret', 's3cret'); }
for (const r of plan.runs) {
  const chunks = [];
  const env = [...(r.env ?? ['PATH=/usr/sbin:/usr/bin:/sbin:/bin']), ...Array.from({ length: r.padVars ?? 0 }, (_, i) => 'PAD' + i + '=' + 'x'.repeat(10_000))];
  const started = performance.now();
  let res;
  try {
    res = await sb.run({ argv: ['/bin/sh', '-c', r.cmd], env, cwd: r.cwd ?? '/', user: r.user ?? { uid: 0, gid: 0, groups: [] }, network: 'default', mounts: r.mounts ?? [], stdout: (c) => chunks.push(c), signal: r.abortAfterMs ? AbortSignal.timeout(r.abortAfterMs) : undefined });
  } catch (err) {
    res = { exitCode: -1, error: err.code, tail: [String(err.message)] };
  }
  res.ms = performance.now() - started;
  const layer = sb.snapshot();
  const entries = [];
  for await (const e of layer.entries()) {
    let body;
    if (e.body) { const parts = []; for await (const c of e.body) parts.push(Buffer.from(c)); body = Buffer.concat(parts).toString(); }
    entries.push({ name: e.header.name, type: e.header.type, uid: e.header.uid, body });
  }
  out.runs.push({ exitCode: res.exitCode, error: res.error, ms: res.ms, stdout: Buffer.concat(chunks).toString(), walkMs: layer.walkMs, entries, tail: res.tail });
}
if (plan.repeat) {
  out.repeat = [];
  for (let i = 0; i < plan.repeat; i++) out.repeat.push(sb.snapshot().walkMs);
}
if (plan.checkCache) out.cacheAfter = existsSync('/kaniko/cache/apt/kept') ? readFileSync('/kaniko/cache/apt/kept', 'utf8') : null;
if (plan.wipe) {
  await sb.wipeRoot();
  const left = [];
  const walk = (dir) => { for (const n of readdirSync(dir)) { const p = (dir === '/' ? '' : dir) + '/' + n; left.push(p); if (!['/proc', '/sys', '/dev'].includes(p) && !sb.ignorePaths.includes(p)) { try { walk(p); } catch {} } } };
  walk('/');
  out.leftAfterWipe = left;
}
console.log(JSON.stringify(out));
`;

/** A rootfs with only this node (own glibc, patchelf'd) and the probe. */
async function makeNodeRootfs(dir: string): Promise<void> {
  const lib = join(dir, 'gantry/lib');
  await mkdir(lib, { recursive: true });
  const ldd = await run('ldd', [process.execPath], { check: true });
  let interp = '';
  for (const line of ldd.stdout.split('\n')) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (!m) continue;
    await copyFile(m[1]!, join(lib, basename(m[1]!)));
    if (/ld-linux/.test(m[1]!)) interp = basename(m[1]!);
  }
  assert.ok(interp, `no interpreter in ldd output: ${ldd.stdout}`);
  const node = join(dir, 'gantry/node');
  await copyFile(process.execPath, node);
  await run('patchelf', ['--set-interpreter', `/gantry/lib/${interp}`, '--force-rpath', '--set-rpath', '/gantry/lib', node], { check: true });
  await writeFile(join(dir, 'gantry/probe.mjs'), PROBE);
  await mkdir(join(dir, 'kaniko'), { recursive: true });
}

interface ProbeResult {
  ignorePaths: string[];
  unpackMs: number;
  runs: Array<{ exitCode: number; error?: string; ms: number; stdout: string; walkMs: number; entries: Array<{ name: string; type: string; body?: string }>; tail: string[] }>;
  cacheAfter?: string | null;
  repeat?: number[];
  leftAfterWipe?: string[];
}

async function probe(base: BaseImage, plan: Record<string, unknown>): Promise<ProbeResult> {
  const r = await runInPod({
    image,
    command: ['/gantry/node', '/gantry/probe.mjs', JSON.stringify({ layout: '/kaniko/bases/base', ...plan })],
    env: { GANTRY_DIST: join(repoRoot, 'dist') },
    mounts: [
      { host: repoRoot, path: repoRoot, readOnly: true },
      { host: base.ociDir, path: '/kaniko/bases/base', readOnly: true },
    ],
    timeoutMs: 180_000,
  });
  assert.equal(r.code, 0, `probe failed (${r.code})\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as ProbeResult;
}

before(async () => {
  work = await tempDir('inplace-pod');
  const rootfs = join(work.path, 'rootfs');
  await makeNodeRootfs(rootfs);
  image = { rootfs, config: { entrypoint: [], cmd: [], env: [], workingDir: '/', user: '' }, manifestDigest: 'none', cleanup: async () => {} };
  busybox = await busyboxBase();
});
after(async () => {
  await work?.cleanup();
});

const names = (r: { entries: Array<{ name: string; type: string }> }) => r.entries.map((e) => `${e.type} ${e.name}`);

describe('inplace sandbox in a pod', () => {
  test('busybox base over /: a RUN layer holds exactly its changes; mounts, secrets and caches stay out; wipeRoot leaves the ignore list', async () => {
    const res = await probe(busybox, {
      secret: true,
      checkCache: true,
      wipe: true,
      runs: [
        { cmd: 'echo hi > /a && rm /bin/ls' },
        { cmd: 'true' },
        { cmd: '(sleep 60; touch /late) & echo started; exit 3' },
        { cmd: 'echo cancelled; sleep 60; touch /late', abortAfterMs: 300 },
        { cmd: 'id -u; id -g; id -G; pwd', cwd: '/home/u', user: { uid: 1000, gid: 1000, groups: [1000, 27] } },
        { cmd: 'id -G', user: { uid: 0, gid: 0, groups: [] } },
        { cmd: 'id -G; env | grep -c ^PAD', padVars: 20, user: { uid: 0, gid: 0, groups: [5] } },
        {
          cmd: 'cat /run/secrets/token > /got; ls /var/cache/apt > /cache-listing; echo kept > /var/cache/apt/kept',
          mounts: [
            { type: 'bind', source: '/kaniko/in/secret', target: '/run/secrets/token', readonly: true },
            { type: 'cache', source: '/kaniko/cache/apt', target: '/var/cache/apt' },
          ],
        },
      ],
    });
    const [first, noop, daemon, cancelled, asUser, asRoot, bigCommand, mounted] = res.runs;
    assert.equal(cancelled!.error, 'ABORTED');
    assert.ok(cancelled!.ms < 10_000, `cancellation took ${cancelled!.ms} ms`);
    assert.deepEqual(names(cancelled!), []);
    const [groupsLine, padCount] = bigCommand!.stdout.trim().split('\n');
    assert.deepEqual(groupsLine!.split(' ').sort(), ['0', '5'], 'supplementary groups with an environment of 200 KB');
    assert.equal(padCount, '20');
    assert.equal(daemon!.exitCode, 3, 'the exit status is the command\'s');
    assert.equal(daemon!.stdout, 'started\n');
    assert.deepEqual(names(daemon!), [], 'what the RUN left running was killed with it');
    assert.equal(first!.exitCode, 0, first!.tail.join('\n'));
    assert.deepEqual(names(first!), ['file a', 'dir bin', 'file bin/.wh.ls']);
    assert.deepEqual(names(noop!), [], 'a RUN that changes nothing gives an empty layer');
    assert.equal(asUser!.exitCode, 0, asUser!.tail.join('\n'));
    assert.deepEqual(asUser!.stdout.trim().split('\n').slice(0, 2), ['1000', '1000']);
    assert.deepEqual(asUser!.stdout.trim().split('\n')[2]!.split(' ').map(Number).sort((a, b) => a - b), [27, 1000]);
    assert.equal(asUser!.stdout.trim().split('\n')[3], '/home/u');
    assert.ok(names(asUser!).includes('dir home/u'), 'the missing working directory was created, and is in the layer');
    assert.ok(names(asUser!).every((n) => n.startsWith('dir home')), names(asUser!).join(', '));
    assert.equal(asRoot!.stdout.trim(), '0', 'no supplementary groups leak from the builder');
    assert.equal(mounted!.exitCode, 0, mounted!.tail.join('\n'));
    assert.deepEqual(names(mounted!), ['file cache-listing', 'file got']);
    assert.equal(mounted!.entries.find((e) => e.name === 'got')!.body, 's3cret', 'the secret was readable at its target');
    assert.equal(res.cacheAfter, 'kept\n', 'the cache directory keeps what the RUN wrote');
    for (const r of res.runs) {
      for (const e of r.entries) assert.doesNotMatch(e.name, /^(proc|sys|dev|gantry|kaniko|run\/secrets)(\/|$)/, e.name);
    }
    for (const p of ['/proc', '/sys', '/dev', '/gantry', '/kaniko', '/var/run', '/etc/resolv.conf', '/etc/hosts', repoRoot, '/kaniko/bases/base']) assert.ok(res.ignorePaths.includes(p), `${p} in ${res.ignorePaths.join(' ')}`);
    const ignored = (p: string) => res.ignorePaths.some((i) => p === i || p.startsWith(i + '/'));
    const ancestorOfIgnored = (p: string) => res.ignorePaths.some((i) => i.startsWith(p + '/'));
    const stray = res.leftAfterWipe!.filter((p) => !ignored(p) && !ancestorOfIgnored(p));
    assert.deepEqual(stray, [], 'wipeRoot leaves only ignored paths and their parents');
    assert.ok(!res.leftAfterWipe!.includes('/bin'));
    process.stdout.write(`# inplace busybox: unpack ${res.unpackMs.toFixed(0)} ms, per-RUN snapshot ${res.runs.map((r) => r.walkMs.toFixed(1)).join(', ')} ms\n`);
  });

  test('Debian base over /: per-RUN snapshot time, and a RUN layer with only its change', async () => {
    const debian = await debianBase();
    const res = await probe(debian, { runs: [{ cmd: 'true' }, { cmd: 'echo x > /etc/x && rm -r /usr/share/doc' }, { cmd: 'true' }], repeat: 5 });
    assert.deepEqual(names(res.runs[0]!), []);
    assert.deepEqual(names(res.runs[1]!), ['dir etc', 'file etc/x', 'dir usr', 'dir usr/share', 'file usr/share/.wh.doc']);
    assert.deepEqual(names(res.runs[2]!), []);
    process.stdout.write(`# inplace debian: unpack ${res.unpackMs.toFixed(0)} ms, per-RUN snapshot ${res.runs.map((r) => r.walkMs.toFixed(1)).join(', ')} ms, repeated ${res.repeat!.map((ms) => ms.toFixed(1)).join(', ')} ms\n`);
  });
});
