import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { access, copyFile, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import tar from 'tar-stream';
import type { Header, Pack } from 'tar-stream';

type Headers = Partial<Header> & Pick<Header, 'name'>;
import { MediaType, type Descriptor, type ImageConfig, type ImageManifest, type RawManifest } from '../oci/types.js';
import type { ImageReader } from '../oci/store.js';
import { DigestingStream, VerifyingStream, parseDigest, sha256 } from '../util/digest.js';
import { GantryError } from '../util/errors.js';
import { tempDir } from './tmp.js';

/**
 * An image whose blobs live on disk under `dir/blobs/<alg>/<hex>` (so `dir` can be inspected or
 * corrupted by a test). It is also an ImageReader, so it can be fed straight to a writer.
 */
export interface TestImage extends ImageReader {
  manifest: RawManifest;
  config: Buffer;
  configDescriptor: Descriptor;
  layers: Descriptor[];
  /** Uncompressed layer digests, as in the config's rootfs.diff_ids. */
  diffIds: string[];
  dir: string;
  /** Path of a blob file inside `dir`. */
  blobPath(digest: string): string;
  cleanup(): Promise<void>;
}

export type MediaTypeFamily = 'oci' | 'docker';

// Fixed timestamps keep layers and configs reproducible for a given seed.
const EPOCH = new Date('2000-01-01T00:00:00Z');
const CHUNK = 64 * 1024;
const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function hostArchitecture(): string {
  const map: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return map[process.arch] ?? process.arch;
}

function types(family: MediaTypeFamily) {
  return family === 'docker'
    ? { manifest: MediaType.DockerManifest, config: MediaType.DockerConfig, layer: MediaType.DockerLayerGzip }
    : { manifest: MediaType.OciManifest, config: MediaType.OciConfig, layer: MediaType.OciLayerGzip };
}

function blobPathIn(dir: string, digest: string): string {
  const { algorithm, encoded } = parseDigest(digest);
  return join(dir, 'blobs', algorithm, encoded);
}

/** Deterministic bytes (xorshift32) for a seed; fast enough for tens of MiB. */
function* seededChunks(seed: number, total: number): Generator<Buffer> {
  let x = (seed ^ 0x9e3779b9) >>> 0 || 1;
  let left = total;
  while (left > 0) {
    const n = Math.min(CHUNK, left);
    const words = new Uint32Array(Math.ceil(n / 4));
    for (let i = 0; i < words.length; i++) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      words[i] = x;
    }
    yield Buffer.from(words.buffer, 0, n);
    left -= n;
  }
}

function* unseededChunks(total: number): Generator<Buffer> {
  for (let left = total; left > 0; left -= CHUNK) yield randomBytes(Math.min(CHUNK, left));
}

type EntrySpec = { header: Headers; body?: Buffer | Iterable<Buffer> };

function addEntry(pack: Pack, spec: EntrySpec): Promise<void> {
  return new Promise((resolve, reject) => {
    const header: Headers = { uid: 0, gid: 0, uname: 'root', gname: 'root', mtime: EPOCH, ...spec.header };
    if (spec.body === undefined || Buffer.isBuffer(spec.body)) {
      const done = (err?: Error | null) => (err ? reject(err) : resolve());
      if (spec.body) pack.entry(header, spec.body, done);
      else pack.entry(header, done);
      return;
    }
    const sink = pack.entry(header, (err) => (err ? reject(err) : resolve()));
    const iter = spec.body[Symbol.iterator]();
    const pump = () => {
      for (;;) {
        const next = iter.next();
        if (next.done) {
          sink.end(undefined);
          return;
        }
        if (!sink.write(next.value)) {
          sink.once('drain', pump);
          return;
        }
      }
    };
    pump();
  });
}

/** Writes entries as a gzip tar blob into `dir`, hashing both the tar (diff id) and the blob in the same pass. */
async function writeLayer(dir: string, entries: EntrySpec[], mediaType: string): Promise<{ desc: Descriptor; diffId: string }> {
  const pack = tar.pack();
  const diff = new DigestingStream();
  const compressed = new DigestingStream();
  const tmpFile = join(dir, 'blobs', `.tmp-${randomBytes(6).toString('hex')}`);
  const done = pipeline(pack, diff, createGzip({ level: 1 }), compressed, createWriteStream(tmpFile));
  for (const e of entries) await addEntry(pack, e);
  pack.finalize();
  await done;
  const desc: Descriptor = { mediaType, digest: compressed.digest, size: compressed.size };
  await rename(tmpFile, blobPathIn(dir, desc.digest));
  return { desc, diffId: diff.digest };
}

async function writeBlob(dir: string, bytes: Buffer, mediaType: string): Promise<Descriptor> {
  const digest = sha256(bytes);
  await writeFile(blobPathIn(dir, digest), bytes);
  return { mediaType, digest, size: bytes.length };
}

async function assemble(
  dir: string,
  cleanup: () => Promise<void>,
  name: string,
  family: MediaTypeFamily,
  layers: Array<{ desc: Descriptor; diffId: string; createdBy: string }>,
  containerConfig: NonNullable<ImageConfig['config']>,
): Promise<TestImage> {
  const t = types(family);
  const config: ImageConfig = {
    created: EPOCH.toISOString(),
    architecture: hostArchitecture(),
    os: 'linux',
    config: containerConfig,
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: layers.map((l) => ({ created: EPOCH.toISOString(), created_by: l.createdBy })),
  };
  const configBytes = Buffer.from(JSON.stringify(config));
  const configDescriptor = await writeBlob(dir, configBytes, t.config);
  const manifestObj: ImageManifest = { schemaVersion: 2, mediaType: t.manifest, config: configDescriptor, layers: layers.map((l) => l.desc) };
  const bytes = Buffer.from(JSON.stringify(manifestObj));
  const manifest: RawManifest = { mediaType: t.manifest, bytes, digest: sha256(bytes) };
  await writeFile(blobPathIn(dir, manifest.digest), bytes);

  const notFound = (what: string) => new GantryError('NOT_FOUND', `${name}: ${what} not found`);
  return {
    name,
    manifest,
    config: configBytes,
    configDescriptor,
    layers: layers.map((l) => l.desc),
    diffIds: layers.map((l) => l.diffId),
    dir,
    blobPath: (digest) => blobPathIn(dir, digest),
    async getManifest(ref) {
      // Any tag names this image; a digest must be this manifest's.
      if (ref !== undefined && ref.includes(':') && ref !== manifest.digest) throw notFound(`manifest ${ref}`);
      return manifest;
    },
    async getManifestByDescriptor(desc) {
      if (desc.digest !== manifest.digest) throw notFound(`manifest ${desc.digest}`);
      return manifest;
    },
    async openBlob(desc): Promise<Readable> {
      const path = blobPathIn(dir, desc.digest);
      try {
        await access(path);
      } catch {
        throw notFound(`blob ${desc.digest}`);
      }
      const verify = new VerifyingStream({ digest: desc.digest, size: desc.size }, `${name}: blob ${desc.digest}`);
      const file = createReadStream(path);
      file.on('error', (e) => verify.destroy(e));
      return file.pipe(verify);
    },
    cleanup,
  };
}

async function newImageDir(prefix: string) {
  const tmp = await tempDir(prefix);
  await mkdir(join(tmp.path, 'blobs', 'sha256'), { recursive: true });
  return tmp;
}

/**
 * An image of `layers` gzip layers, each holding about `layerBytes` of random file content (split
 * over up to 16 files). With a `seed` the bytes, and so every digest, are reproducible.
 */
export async function makeRandomImage(opts: { layers: number; layerBytes: number; seed?: number; mediaTypes?: MediaTypeFamily }): Promise<TestImage> {
  const family = opts.mediaTypes ?? 'oci';
  const tmp = await newImageDir('image');
  try {
    const layers: Array<{ desc: Descriptor; diffId: string; createdBy: string }> = [];
    for (let i = 0; i < opts.layers; i++) {
      const files = Math.max(1, Math.min(16, Math.ceil(opts.layerBytes / (1024 * 1024))));
      const entries: EntrySpec[] = [{ header: { name: `layer${i}/`, type: 'directory', mode: 0o755 } }];
      for (let f = 0; f < files; f++) {
        const size = Math.floor(opts.layerBytes / files) + (f < opts.layerBytes % files ? 1 : 0);
        const body = opts.seed === undefined ? unseededChunks(size) : seededChunks(opts.seed * 1_000_003 + i * 1009 + f, size);
        entries.push({ header: { name: `layer${i}/file${f}.bin`, type: 'file', mode: 0o644, size }, body });
      }
      const layer = await writeLayer(tmp.path, entries, types(family).layer);
      layers.push({ ...layer, createdBy: `random layer ${i}` });
    }
    return await assemble(tmp.path, tmp.cleanup, `random-image:${tmp.path}`, family, layers, { Env: [PATH_ENV], Cmd: ['sh'] });
  } catch (e) {
    await tmp.cleanup();
    throw e;
  }
}

const BUSYBOX = process.env.GANTRY_TEST_BUSYBOX ?? '/bin/busybox';

/**
 * A runnable one-layer image: a static busybox with every applet it knows linked in /bin, plus the
 * /etc files a shell and `id` expect. Built from the host's busybox-static, no network.
 */
export async function makeBusyboxImage(opts: { mediaTypes?: MediaTypeFamily } = {}): Promise<TestImage> {
  const family = opts.mediaTypes ?? 'oci';
  const binary = await readFile(BUSYBOX);
  const applets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' })
    .split('\n')
    .map((s) => s.trim())
    .filter((s) => s && s !== 'busybox' && !s.includes('/'))
    .sort();
  const dir = (name: string, mode = 0o755): EntrySpec => ({ header: { name: `${name}/`, type: 'directory', mode } });
  const file = (name: string, body: string | Buffer, mode = 0o644): EntrySpec => {
    const buf = Buffer.isBuffer(body) ? body : Buffer.from(body);
    return { header: { name, type: 'file', mode, size: buf.length }, body: buf };
  };
  const entries: EntrySpec[] = [
    dir('bin'),
    file('bin/busybox', binary, 0o755),
    ...applets.map((a): EntrySpec => ({ header: { name: `bin/${a}`, type: 'symlink', linkname: 'busybox', mode: 0o777 } })),
    dir('dev'),
    dir('etc'),
    file('etc/group', 'root:x:0:\ndaemon:x:1:\nusers:x:100:\nnogroup:x:65534:\n'),
    file('etc/hostname', 'gantry\n'),
    file('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nnobody:x:65534:65534:nobody:/home:/bin/false\n'),
    dir('home'),
    dir('proc', 0o555),
    dir('root', 0o700),
    dir('sys', 0o555),
    dir('tmp', 0o1777),
    dir('usr'),
    dir('usr/bin'),
    dir('var'),
  ];
  const tmp = await newImageDir('busybox');
  try {
    const layer = await writeLayer(tmp.path, entries, types(family).layer);
    return await assemble(tmp.path, tmp.cleanup, `busybox-image:${tmp.path}`, family, [{ ...layer, createdBy: 'busybox-static rootfs' }], {
      Env: [PATH_ENV],
      Cmd: ['sh'],
    });
  } catch (e) {
    await tmp.cleanup();
    throw e;
  }
}

interface LayoutIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
}

/**
 * Writes (or adds to) an OCI image layout at `dir` with the image under `tag`, so other tools can
 * read it: `skopeo copy oci:<dir>:<tag> docker://…`. An existing entry for the same tag is replaced.
 */
export async function writeOciLayout(img: TestImage, dir: string, tag: string): Promise<void> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const digests = [img.manifest.digest, img.configDescriptor.digest, ...img.layers.map((l) => l.digest)];
  for (const digest of digests) {
    const target = blobPathIn(dir, digest);
    const exists = await stat(target).then(() => true, () => false);
    if (!exists) await copyFile(img.blobPath(digest), target);
  }
  const indexFile = join(dir, 'index.json');
  let index: LayoutIndex = { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] };
  try {
    index = JSON.parse(await readFile(indexFile, 'utf8')) as LayoutIndex;
  } catch {
    // No index yet: start a fresh layout.
  }
  const refName = 'org.opencontainers.image.ref.name';
  index.manifests = index.manifests.filter((m) => m.annotations?.[refName] !== tag);
  index.manifests.push({
    mediaType: img.manifest.mediaType,
    digest: img.manifest.digest,
    size: img.manifest.bytes.length,
    annotations: { [refName]: tag },
  });
  await writeFile(indexFile, JSON.stringify(index));
}

/**
 * Writes the image in skopeo's `dir:` format. Unlike `oci:` (whose index skopeo only reads for OCI
 * media types), `dir:` carries Docker schema2 manifests byte for byte.
 */
export async function writeSkopeoDir(img: TestImage, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'version'), 'Directory Transport Version: 1.1\n');
  await writeFile(join(dir, 'manifest.json'), img.manifest.bytes);
  for (const digest of [img.configDescriptor.digest, ...img.layers.map((l) => l.digest)]) {
    const { algorithm, encoded } = parseDigest(digest);
    await copyFile(img.blobPath(digest), join(dir, algorithm === 'sha256' ? encoded : `${algorithm}-${encoded}`));
  }
}
