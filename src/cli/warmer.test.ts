import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { hostPlatform } from '../oci/index.js';
import type { BuildOptions } from '../build/index.js';
import { executorOptions } from './executor.js';
import { executorFlags } from './executor-flags.js';
import { parseFlags } from './flags.js';
import { main, type CliIO } from './main.js';
import { mergedRegistryOptions, registryFlags } from './registry-flags.js';
import { dockerfileImages, warmerFlags, warmerPlan } from './warmer.js';

function capture(): CliIO & { out: string; err: string } {
  const io = { out: '', err: '', env: {}, stdout: (t: string) => void (io.out += t), stderr: (t: string) => void (io.err += t) };
  return io;
}

describe('gantry warmer flags (Kaniko warmer spellings)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gantry-warmer-flags-'));
    await writeFile(
      join(dir, 'Dockerfile'),
      'ARG BASE=debian\nARG TAG=bookworm\nFROM ${BASE}:${TAG} AS build\nCOPY --from=r.example/tools:1 /t /t\nFROM scratch AS empty\nFROM build\nFROM r.example/app:2\n',
    );
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const plan = (argv: string[], env: NodeJS.ProcessEnv = {}) => warmerPlan(parseFlags(argv, warmerFlags, env), env);

  it('takes Kaniko defaults: /cache, 336h, no force, the host platform', async () => {
    const p = await plan(['--image=debian:bookworm']);
    assert.deepEqual(p, { cacheDir: '/cache', ttlMs: 336 * 3_600_000, force: false, platform: hostPlatform(), images: ['debian:bookworm'] });
  });

  it('takes the shorthands, repeated --image, --customPlatform and a Go duration', async () => {
    const p = await plan(['-i', 'a:1', '--image=b:2', '-i=a:1', '-c', '/tmp/c', '-f', '--cache-ttl=1h30m', '--customPlatform=linux/arm64']);
    assert.deepEqual(p, { cacheDir: '/tmp/c', ttlMs: 5_400_000, force: true, platform: { os: 'linux', architecture: 'arm64' }, images: ['a:1', 'b:2'] });
  });

  it('--dockerfile adds the FROM and COPY --from images after ARG expansion, without scratch or stages', async () => {
    const p = await plan(['-d', join(dir, 'Dockerfile'), '--build-arg=TAG=trixie', '--image=r.example/app:2']);
    assert.deepEqual(p.images, ['r.example/app:2', 'debian:trixie', 'r.example/tools:1']);
  });

  it('a bare --build-arg takes its value from the environment', () => {
    const text = 'ARG V\nFROM busybox:${V}\n';
    assert.deepEqual(dockerfileImages(text, 'Dockerfile', { V: undefined }, hostPlatform(), { V: '1.36' }), ['busybox:1.36']);
  });

  const refusals: Array<{ name: string; argv: string[]; message: RegExp }> = [
    { name: 'nothing to cache', argv: [], message: /no image to cache/ },
    { name: 'a local layout', argv: ['--image=oci:/tmp/x'], message: /only registry images can be cached/ },
    { name: 'a missing Dockerfile', argv: ['--dockerfile=/nonexistent/Dockerfile'], message: /reading Dockerfile/ },
    { name: 'a bad TTL', argv: ['--image=a', '--cache-ttl=14d'], message: /invalid duration "14d"/ },
    { name: 'a bad platform', argv: ['--image=a', '--customPlatform=linux/amd64/v2/x'], message: /invalid platform/ },
  ];
  for (const r of refusals) it(`refuses ${r.name}`, async () => assert.rejects(plan(r.argv), r.message));

  it('exits 2 on bad usage and lists its flags with --help', async () => {
    let io = capture();
    assert.equal(await main(['warmer', '--cache-dir=/tmp/x'], io), 2);
    assert.match(io.err, /no image to cache/);
    io = capture();
    assert.equal(await main(['warmer', 'debian'], io), 2);
    assert.match(io.err, /takes no arguments/);
    io = capture();
    assert.equal(await main(['warmer', '--help'], io), 0);
    for (const f of ['--image', '--cache-dir', '--dockerfile', '--build-arg', '--force', '--customPlatform', '--registry-mirror', '--insecure-pull', '--skip-tls-verify-registry']) {
      assert.ok(io.out.includes(f.replace('--customPlatform', '--custom-platform')) || io.out.includes(f), f);
    }
  });
});

describe('executor and build --cache-dir select the base image cache', () => {
  const io = { stdout: () => undefined, stderr: () => undefined, env: {} };
  const exec = (argv: string[]): BuildOptions['baseImageCache'] => executorOptions(parseFlags(['--context=/tmp', '--no-push', ...argv], executorFlags), io).baseImageCache;
  const cases: Array<{ name: string; argv: string[]; want: BuildOptions['baseImageCache'] }> = [
    { name: 'off without --cache or --cache-dir', argv: [], want: undefined },
    { name: 'Kaniko: --cache=true reads the default /cache with the cache TTL', argv: ['--cache=true'], want: { dir: '/cache', ttl: '336h' } },
    { name: 'an explicit --cache-dir is read even without --cache', argv: ['--cache-dir=/tmp/bases', '--cache-ttl=2h'], want: { dir: '/tmp/bases', ttl: '2h' } },
  ];
  for (const c of cases) it(c.name, () => assert.deepEqual(exec(c.argv), c.want));

  it('gantry build --cache-dir', async () => {
    // --call=targets stops before building; the flag must still parse.
    const d = await mkdtemp(join(tmpdir(), 'gantry-build-cachedir-'));
    try {
      await writeFile(join(d, 'Dockerfile'), 'FROM scratch\n');
      const out = capture();
      assert.equal(await main(['build', '--cache-dir=/tmp/bases', '--call=targets', d], out), 0, out.err);
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  });
});

describe('pull and push registry switches merge into one client', () => {
  const merged = (argv: string[]) => {
    const o = mergedRegistryOptions(parseFlags(argv, registryFlags), {});
    return { insecure: o.insecure, skipTlsVerify: o.skipTlsVerify };
  };
  const cases: Array<{ name: string; argv: string[]; want: ReturnType<typeof merged> }> = [
    { name: 'nothing', argv: [], want: { insecure: [], skipTlsVerify: [] } },
    { name: 'per-registry lists', argv: ['--insecure-registry=a', '--insecure-registry=b', '--skip-tls-verify-registry=c'], want: { insecure: ['a', 'b'], skipTlsVerify: ['c'] } },
    { name: 'pull-side true wins', argv: ['--insecure-pull', '--skip-tls-verify-pull', '--insecure-registry=a'], want: { insecure: true, skipTlsVerify: true } },
    { name: 'push-side true wins', argv: ['--insecure', '--skip-tls-verify'], want: { insecure: true, skipTlsVerify: true } },
  ];
  for (const c of cases) it(c.name, () => assert.deepEqual(merged(c.argv), c.want));
});
