/**
 * RUN semantics on the busybox base, gantry alone (what buildah 1.28 cannot build or does
 * differently): environment and ARG exactness, USER resolution with supplementary groups,
 * heredocs, mounts (cache, secret, bind, tmpfs), --network=none, failures, unsupported options.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { access, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { build, type BuildOptions } from '../../src/build/index.js';
import { busyboxBase, type BaseImage } from '../../src/testing/bases.js';
import { tempDir, type TempDir } from '../../src/testing/tmp.js';
import type { Logger } from '../../src/util/logger.js';
import { writeContext } from '../compare/support.js';
import { allLayerBytes, layoutImage, newLayers, type LayerEntryInfo } from './support.js';

const SECRET = 'S3cr3t-value-7f1c9a';
const ENV_SECRET = 'env-secret-42d0b3';
const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const DOCKERFILE = `ARG BASE
FROM \${BASE} AS build
RUN mkdir /out && echo from-stage > /out/file

FROM \${BASE}
ARG A=1
ENV E=x
RUN env | sort > /env
RUN echo 'app:x:1234:1234::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1234:' >> /etc/group && echo 'extra:x:2000:daemon,app' >> /etc/group
USER app
RUN { id -u; id -g; grep '^Groups:' /proc/self/status; echo "$HOME"; } > /tmp/app-id
USER 4242
RUN echo "$(id -u):$(id -g)" > /tmp/numeric-id
USER root
RUN <<EOF
echo "heredoc $A" > /heredoc
echo second >> /heredoc
EOF
RUN <<EOF
#!/bin/sh
echo "shebang $0" > /shebang
EOF
RUN cat <<EOF > /fed
fed \${A}
EOF
RUN --mount=type=cache,target=/cache sh -c 'cat /cache/count 2>/dev/null || echo 0' > /seen && echo $(( $(cat /seen) + 1 )) > /cache/count
RUN --mount=type=cache,target=/c2,id=owned,uid=1000,gid=1000,mode=0700 stat -c '%u:%g:%a' /c2 > /c2stat
RUN --mount=type=secret,id=tok --mount=type=secret,id=envtok,env=TOKEN sha256sum < /run/secrets/tok | cut -c1-64 > /secret-sha && printf %s "$TOKEN" | sha256sum | cut -c1-64 > /env-sha && stat -c '%a %u' /run/secrets/tok > /secret-mode && cat /run/secrets/tok
RUN --mount=type=secret,id=absent test ! -e /run/secrets/absent && echo skipped > /absent-ok
RUN --network=none wc -l < /proc/net/dev > /ifs-none
RUN --mount=type=bind,target=/ctx cat /ctx/hello.txt > /from-ctx && test ! -e /ctx/ignored.txt
RUN --mount=type=bind,target=/ctx,rw echo scribble > /ctx/new && cat /ctx/new > /rw-ok
RUN --mount=type=bind,from=build,source=/out,target=/b cat /b/file > /from-stage
RUN --mount=type=tmpfs,target=/scratch echo t > /scratch/t && cat /scratch/t > /tmpfs-ok
`;

// The layers the final stage adds, in order (one per RUN).
const RUNS = ['env', 'users', 'app-id', 'numeric-id', 'heredoc', 'shebang', 'fed', 'cache', 'c2', 'secret', 'absent', 'none', 'bind-ctx', 'bind-rw', 'bind-stage', 'tmpfs'] as const;
type Run = (typeof RUNS)[number];

describe('RUN features on busybox', () => {
  let base: BaseImage;
  let tmp: TempDir;
  let lines: string[];
  let layers: Record<Run, LayerEntryInfo[]>;
  let layout: string;
  let baseCount: number;
  const ctx = () => join(tmp.path, 'ctx');
  const logger: Logger = { log: (_level, message) => lines.push(message) };
  const options = (out: string, extra: Partial<BuildOptions> = {}): BuildOptions => ({
    context: ctx(),
    ociLayoutPath: out,
    workDir: tmp.path,
    defaultOutputDir: false,
    env: { ENV_SECRET_VAR: ENV_SECRET },
    buildArgs: { BASE: base.ref, HTTP_PROXY: 'http://proxy.invalid:3128' },
    cacheDir: join(tmp.path, 'run-cache'),
    secrets: { tok: { src: join(tmp.path, 'secret.txt') }, envtok: { env: 'ENV_SECRET_VAR' } },
    logger,
    ...extra,
  });

  before(async () => {
    base = await busyboxBase();
    baseCount = (await layoutImage(base.ociDir)).manifest.layers.length;
    tmp = await tempDir('run-features');
    await writeFile(join(tmp.path, 'secret.txt'), SECRET);
    await mkdir(ctx());
    await writeContext(ctx(), { Dockerfile: DOCKERFILE, 'hello.txt': 'hello\n', 'ignored.txt': 'no\n', '.dockerignore': 'ignored.txt\n' });
    lines = [];
    layout = join(tmp.path, 'first');
    await build(options(layout));
    const added = await newLayers(layout, baseCount);
    assert.equal(added.length, RUNS.length);
    layers = Object.fromEntries(RUNS.map((r, i) => [r, added[i]!])) as typeof layers;
  });
  after(() => tmp?.cleanup());

  const content = (run: Run, name: string) => layers[run].find((e) => e.name === name)?.data?.toString();

  it('gives RUN exactly the config Env, the ARGs in scope, proxy args and HOME', () => {
    assert.deepEqual(content('env', 'env')?.split('\n'), ['A=1', 'E=x', 'HOME=/root', 'HTTP_PROXY=http://proxy.invalid:3128', DEFAULT_PATH, 'PWD=/', 'SHLVL=1', '']);
  });

  it('keeps ARGs and proxy args out of the config and proxies out of history', async () => {
    const { config } = await layoutImage(layout);
    assert.deepEqual(config.config?.Env, [DEFAULT_PATH, 'E=x']);
    const runs = (config.history ?? []).filter((h) => h.created_by?.startsWith('RUN '));
    assert.equal(runs[0]!.created_by, 'RUN |1 A=1 /bin/sh -c env | sort > /env # buildkit');
    assert.ok(!JSON.stringify(config.history).includes('proxy.invalid'));
  });

  it('resolves USER names in the image, with supplementary groups and HOME', () => {
    assert.match(content('app-id', 'tmp/app-id') ?? '', /^1234\n1234\nGroups:\t2000 ?\n\/home\/app\n$/);
    assert.equal(layers['app-id'].find((e) => e.name === 'tmp/app-id')?.uid, 1234);
    assert.equal(content('numeric-id', 'tmp/numeric-id'), '4242:0\n');
  });

  it('runs heredocs as BuildKit does', () => {
    assert.equal(content('heredoc', 'heredoc'), 'heredoc 1\nsecond\n');
    assert.equal(content('shebang', 'shebang'), 'shebang /dev/pipes/EOF\n');
    assert.equal(content('fed', 'fed'), 'fed 1\n');
    assert.ok(!layers.shebang.some((e) => e.name.startsWith('dev')));
  });

  it('mounts secrets without leaving them in layers, config, history or the log', async () => {
    const sha = (v: string) => createHash('sha256').update(v).digest('hex') + '\n';
    assert.equal(content('secret', 'secret-sha'), sha(SECRET));
    assert.equal(content('secret', 'env-sha'), sha(ENV_SECRET));
    assert.equal(content('secret', 'secret-mode'), '400 0\n');
    assert.equal(content('absent', 'absent-ok'), 'skipped\n');
    const { configText } = await layoutImage(layout);
    const blobs = await allLayerBytes(layout);
    for (const value of [SECRET, ENV_SECRET]) {
      for (const bytes of blobs) assert.equal(bytes.indexOf(value), -1, 'secret in a layer');
      assert.ok(!configText.includes(value), 'secret in the config');
      assert.ok(!lines.some((l) => l.includes(value)), 'secret in the log');
    }
    assert.ok(lines.some((l) => l.endsWith(' ****')), 'the echoed secret is masked in the log');
    assert.ok(!layers.secret.some((e) => e.name.startsWith('run')));
  });

  it('keeps cache mounts out of the layer, owned as asked, and between builds', async () => {
    assert.equal(content('cache', 'seen'), '0\n');
    assert.deepEqual(layers.cache.map((e) => e.name), ['seen']);
    assert.equal(content('c2', 'c2stat'), '1000:1000:700\n');
    const second = join(tmp.path, 'second');
    await build(options(second));
    const again = await newLayers(second, baseCount);
    assert.equal(again[RUNS.indexOf('cache')]!.find((e) => e.name === 'seen')?.data?.toString(), '1\n');
  });

  it('runs --network=none with only the loopback interface', () => {
    assert.equal(content('none', 'ifs-none')?.trim(), '3');
  });

  it('binds the context (after .dockerignore), stages and tmpfs without capturing them', async () => {
    assert.equal(content('bind-ctx', 'from-ctx'), 'hello\n');
    assert.equal(content('bind-rw', 'rw-ok'), 'scribble\n');
    await assert.rejects(access(join(ctx(), 'new')), 'a rw bind writes to a copy');
    assert.equal(content('bind-stage', 'from-stage'), 'from-stage\n');
    assert.equal(content('tmpfs', 'tmpfs-ok'), 't\n');
    for (const run of ['bind-ctx', 'bind-rw', 'bind-stage', 'tmpfs'] as const) {
      assert.deepEqual(layers[run].filter((e) => /^(ctx|b|scratch)(\/|$)/.test(e.name)), [], run);
    }
  });

  const failures: Array<[string, string, (e: Error & { code?: string }) => boolean]> = [
    [
      'a failing command names the line and shows its output',
      'ARG BASE\nFROM ${BASE}\n\nRUN echo before-the-failure && exit 3\nRUN echo never\n',
      (e) => e.code === 'BUILD_FAILED' && e.message.startsWith('Dockerfile:4: RUN echo before-the-failure && exit 3: exit code 3') && e.message.includes('\nbefore-the-failure'),
    ],
    ['a required secret that was not given', 'ARG BASE\nFROM ${BASE}\nRUN --mount=type=secret,id=nope,required true\n', (e) => e.code === 'NOT_FOUND' && /^Dockerfile:3: .*secret nope is required/.test(e.message)],
    ['ssh mounts', 'ARG BASE\nFROM ${BASE}\nRUN --mount=type=ssh true\n', (e) => e.code === 'UNSUPPORTED' && /type=ssh/.test(e.message)],
    ['--security=insecure', 'ARG BASE\nFROM ${BASE}\nRUN --security=insecure true\n', (e) => e.code === 'UNSUPPORTED' && /insecure/.test(e.message)],
    ['an unknown USER name', 'ARG BASE\nFROM ${BASE}\nUSER ghost\nRUN true\n', (e) => e.code === 'BUILD_FAILED' && /unable to find user ghost/.test(e.message)],
  ];
  failures.forEach(([name, dockerfile, check], i) => {
    it(`fails clearly: ${name}`, async () => {
      const dir = join(tmp.path, `fail-${i}`);
      await mkdir(dir);
      await writeContext(dir, { Dockerfile: dockerfile });
      const out = join(tmp.path, `fail-out-${i}`);
      await assert.rejects(build({ ...options(out), context: dir }), (e: Error & { code?: string }) => {
        assert.ok(check(e), `${e.code}: ${e.message}`);
        return true;
      });
      await assert.rejects(access(out), 'no image is written');
    });
  });
});
