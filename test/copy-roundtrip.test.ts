import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { main, type CliIO } from '../src/cli/main.js';
import { makeRandomImage, writeOciLayout, type TestImage } from '../src/testing/images.js';
import { startRegistry, type TestRegistry } from '../src/testing/registry.js';
import { run } from '../src/testing/exec.js';
import { skopeoInspectRaw, skopeoRegistryFlags } from '../src/testing/skopeo.js';
import { tempDir, type TempDir } from '../src/testing/tmp.js';

/**
 * The foundation's promise: `gantry copy` moves an image plain -> TLS+auth -> oci: ->
 * docker-archive: -> back without changing a digest, and skopeo (an independent client) reads
 * every intermediate result.
 */
describe('gantry copy round trip across every store', () => {
  let plain: TestRegistry;
  let secure: TestRegistry;
  let img: TestImage;
  let tmp: TempDir;
  let env: NodeJS.ProcessEnv;

  const sha = (b: Buffer) => 'sha256:' + createHash('sha256').update(b).digest('hex');

  async function gantry(...args: string[]): Promise<string> {
    const io: CliIO & { out: string; err: string } = { out: '', err: '', env, stdout: (t) => void (io.out += t), stderr: (t) => void (io.err += t) };
    const code = await main(args, io);
    assert.equal(code, 0, `gantry ${args.join(' ')} failed:\n${io.err}`);
    return io.out;
  }

  const regFlags = () => [`--insecure-registry=${plain.host}`, `--registry-certificate=${secure.host}=${secure.caFile}`];

  before(async () => {
    [plain, secure] = await Promise.all([startRegistry({ kind: 'plain' }), startRegistry({ kind: 'tls-htpasswd' })]);
    img = await makeRandomImage({ layers: 3, layerBytes: 300_000, seed: 7 });
    tmp = await tempDir('gantry-copy-rt');
    const dockerConfig = join(tmp.path, 'docker');
    await mkdir(dockerConfig);
    const auth = Buffer.from(`${secure.username}:${secure.password}`).toString('base64');
    await writeFile(join(dockerConfig, 'config.json'), JSON.stringify({ auths: { [secure.host]: { auth } } }));
    env = { PATH: process.env.PATH, HOME: tmp.path, DOCKER_CONFIG: dockerConfig };
    await writeOciLayout(img, join(tmp.path, 'src'), 'v1');
  });

  after(async () => {
    await Promise.allSettled([plain?.stop(), secure?.stop(), img?.cleanup(), tmp?.cleanup()]);
  });

  test('keeps the manifest digest through plain, TLS+auth, oci and docker-archive', async (t) => {
    const want = img.manifest.digest;
    const stepDigest = async (src: string, dst: string) => (await gantry('copy', ...regFlags(), src, dst)).trim();

    assert.equal(await stepDigest(`oci:${join(tmp.path, 'src')}:v1`, `${plain.host}/rt/app:v1`), want);
    assert.equal(sha(await skopeoInspectRaw(plain, 'rt/app:v1')), want, 'skopeo reads the plain registry copy');

    assert.equal(await stepDigest(`${plain.host}/rt/app:v1`, `${secure.host}/rt/app:v1`), want);
    assert.equal(sha(await skopeoInspectRaw(secure, 'rt/app:v1')), want, 'skopeo reads the TLS+auth copy');

    const layout = join(tmp.path, 'layout');
    assert.equal(await stepDigest(`${secure.host}/rt/app:v1`, `oci:${layout}:v1`), want);
    const fromLayout = await run('skopeo', ['inspect', '--raw', `oci:${layout}:v1`], { check: true });
    assert.equal(sha(fromLayout.stdoutBuffer), want, 'skopeo reads the oci layout');

    const archive = join(tmp.path, 'image.tar');
    assert.equal(await stepDigest(`oci:${layout}:v1`, `docker-archive:${archive}:rt/app:v1`), want);
    const archived = JSON.parse((await run('skopeo', ['inspect', `docker-archive:${archive}`], { check: true })).stdout) as { Layers: string[] };
    // skopeo's docker-archive source decompresses layers as `docker load` does, so it reports
    // them by their uncompressed digests: the image's diff_ids.
    assert.deepEqual(archived.Layers, img.diffIds, 'skopeo reads the same layers from the archive');

    assert.equal(await stepDigest(`docker-archive:${archive}`, `${plain.host}/rt/back:v1`), want);
    assert.equal(sha(await skopeoInspectRaw(plain, 'rt/back:v1')), want, 'back in a registry with the same digest');

    // And skopeo copies what gantry pushed, to a layout of its own, keeping the digest.
    const skopeoLayout = join(tmp.path, 'skopeo-layout');
    await run('skopeo', ['copy', '--insecure-policy', ...skopeoRegistryFlags(plain, 'src'), `docker://${plain.host}/rt/back:v1`, `oci:${skopeoLayout}:v1`], { check: true });
    const index = JSON.parse(await readFile(join(skopeoLayout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    assert.equal(index.manifests[0]?.digest, want);
    t.diagnostic(`round trip kept ${want} across 5 copies`);
  });

  test('inspect prints the manifest and, with --config, the config', async () => {
    const manifest = JSON.parse(await gantry('inspect', ...regFlags(), `${secure.host}/rt/app:v1`)) as { layers: unknown[] };
    assert.equal(manifest.layers.length, 3);
    const config = JSON.parse(await gantry('inspect', '--config', ...regFlags(), `${secure.host}/rt/app:v1`)) as { rootfs: { diff_ids: string[] } };
    assert.deepEqual(config.rootfs.diff_ids, img.diffIds);
  });

  test('a wrong password fails naming the registry, exit 1', async () => {
    const badConfig = join(tmp.path, 'bad');
    await mkdir(badConfig, { recursive: true });
    await writeFile(join(badConfig, 'config.json'), JSON.stringify({ auths: { [secure.host]: { auth: Buffer.from('nobody:wrong').toString('base64') } } }));
    const io: CliIO & { out: string; err: string } = { out: '', err: '', env: { ...env, DOCKER_CONFIG: badConfig }, stdout: (t) => void (io.out += t), stderr: (t) => void (io.err += t) };
    const code = await main(['copy', ...regFlags(), `oci:${join(tmp.path, 'src')}:v1`, `${secure.host}/rt/denied:v1`], io);
    assert.equal(code, 1);
    assert.ok(io.err.includes(secure.host), io.err);
    assert.match(io.err, /UNAUTHORIZED|unauthori[sz]ed|credentials/i);
  });
});
