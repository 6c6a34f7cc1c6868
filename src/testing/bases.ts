import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { MediaType, type Descriptor, type ImageConfig, type ImageManifest } from '../oci/types.js';
import { DigestingStream, sha256 } from '../util/digest.js';
import { run } from './exec.js';
import { makeBusyboxImage, writeOciLayout } from './images.js';
import type { TestRegistry } from './registry.js';
import { skopeoRegistryFlags } from './skopeo.js';
import { tempDir } from './tmp.js';

/** A base image stored as an OCI layout; `ref` is what skopeo and buildah accept. */
export interface BaseImage {
  ociDir: string;
  tag: string;
  ref: `oci:${string}`;
}

const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const EPOCH = '2000-01-01T00:00:00Z';
// Bump when the way a base is assembled changes, so stale caches are rebuilt rather than trusted.
const RECIPE_VERSION = 'v1';

/** Where base images are cached between runs: $GANTRY_TEST_CACHE, else ~/.cache/gantry-test. */
export function testCacheDir(): string {
  return process.env.GANTRY_TEST_CACHE ?? join(homedir(), '.cache', 'gantry-test');
}

function baseImage(ociDir: string, tag: string): BaseImage {
  return { ociDir, tag, ref: `oci:${ociDir}:${tag}` };
}

const exists = (path: string) => stat(path).then(() => true, () => false);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Returns the cached layout `<cache>/<key>`, building it with `build(tmpDir)` when absent. Test files
 * run in parallel processes, so a lock directory keeps two of them from debootstrapping at once; the
 * finished layout appears by an atomic rename, so a reader never sees half of one.
 */
async function cached(key: string, build: (dir: string) => Promise<void>, staleLockMs: number): Promise<string> {
  const cache = testCacheDir();
  const final = join(cache, key);
  const lock = `${final}.lock`;
  await mkdir(cache, { recursive: true });
  for (;;) {
    if (await exists(join(final, 'index.json'))) return final;
    try {
      await mkdir(lock);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const age = Date.now() - (await stat(lock).then((s) => s.mtimeMs, () => Date.now()));
      // A process killed mid-build leaves its lock behind; past the longest plausible build it is dead.
      if (age > staleLockMs) await rm(lock, { recursive: true, force: true });
      else await sleep(500);
      continue;
    }
    try {
      if (await exists(join(final, 'index.json'))) return final;
      const work = join(cache, `.tmp-${key}-${randomBytes(4).toString('hex')}`);
      try {
        await build(work);
        await rm(final, { recursive: true, force: true });
        await rename(work, final);
      } finally {
        await rm(work, { recursive: true, force: true });
      }
      return final;
    } finally {
      await rm(lock, { recursive: true, force: true });
    }
  }
}

async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

/**
 * The busybox-static image of makeBusyboxImage as a cached OCI layout (tag `latest`). Keyed by the
 * busybox binary's sha256, so a host upgrade builds a new one.
 */
export async function busyboxBase(): Promise<BaseImage> {
  const binary = process.env.GANTRY_TEST_BUSYBOX ?? '/bin/busybox';
  const key = `busybox-${RECIPE_VERSION}-${(await fileSha256(binary)).slice(0, 16)}`;
  const dir = await cached(
    key,
    async (work) => {
      const img = await makeBusyboxImage();
      try {
        await writeOciLayout(img, work, 'latest');
      } finally {
        await img.cleanup();
      }
    },
    60_000,
  );
  return baseImage(dir, 'latest');
}

/**
 * Copies a base image into a test registry as `<reg.host>/<repoTag>` with skopeo, so a build can
 * name it in FROM (buildah then gets the same image via `baseImages: { [host/repoTag]: base.ref }`).
 * Returns the full reference.
 */
export async function pushBase(base: BaseImage, reg: TestRegistry, repoTag: string): Promise<string> {
  const tmp = await tempDir('push-base');
  try {
    const dest = `${reg.host}/${repoTag}`;
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: tmp.path, XDG_RUNTIME_DIR: tmp.path, REGISTRY_AUTH_FILE: join(tmp.path, 'auth.json') };
    await run('skopeo', ['copy', '--quiet', '--insecure-policy', '--retry-times=0', ...skopeoRegistryFlags(reg, 'dest'), base.ref, `docker://${dest}`], { check: true, env });
    return dest;
  } finally {
    await tmp.cleanup();
  }
}

interface AptSource {
  uri: string;
  suites: string[];
}

/** Parses one-line (`deb [opts] URI suite comps`) and deb822 (`URIs:`/`Suites:`) apt sources. */
export function parseAptSources(text: string, deb822: boolean): AptSource[] {
  const out: AptSource[] = [];
  if (!deb822) {
    for (const raw of text.split('\n')) {
      const line = raw.replace(/#.*/, '').trim();
      const m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line);
      if (m) out.push({ uri: m[1]!, suites: [m[2]!] });
    }
    return out;
  }
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    for (const raw of stanza.split('\n')) {
      if (raw.startsWith('#')) continue;
      const m = /^([A-Za-z-]+):\s*(.*)$/.exec(raw);
      if (m) fields.set(m[1]!.toLowerCase(), m[2]!.trim());
    }
    const typesField = (fields.get('types') ?? '').split(/\s+/);
    if (!typesField.includes('deb') || fields.get('enabled')?.toLowerCase() === 'no') continue;
    const suites = (fields.get('suites') ?? '').split(/\s+/).filter(Boolean);
    for (const uri of (fields.get('uris') ?? '').split(/\s+/).filter(Boolean)) out.push({ uri, suites });
  }
  return out;
}

/**
 * The Debian mirror this machine's apt uses for `suite` (the only package mirror reachable here);
 * $GANTRY_TEST_DEBIAN_MIRROR overrides it.
 */
export async function findDebianMirror(suite: string): Promise<string> {
  if (process.env.GANTRY_TEST_DEBIAN_MIRROR) return process.env.GANTRY_TEST_DEBIAN_MIRROR;
  const files: Array<{ path: string; deb822: boolean }> = [{ path: '/etc/apt/sources.list', deb822: false }];
  const dropIns = await readdir('/etc/apt/sources.list.d').catch(() => [] as string[]);
  for (const name of dropIns.sort()) {
    // Only these two suffixes are read by apt; `*.list.disabled` and the like are switched off.
    if (name.endsWith('.list')) files.push({ path: join('/etc/apt/sources.list.d', name), deb822: false });
    if (name.endsWith('.sources')) files.push({ path: join('/etc/apt/sources.list.d', name), deb822: true });
  }
  for (const f of files) {
    const text = await readFile(f.path, 'utf8').catch(() => '');
    const match = parseAptSources(text, f.deb822).find((s) => s.suites.includes(suite));
    if (match) return match.uri;
  }
  throw new Error(`no apt source for Debian "${suite}" in /etc/apt/sources.list{,.d/}; set GANTRY_TEST_DEBIAN_MIRROR to a mirror URL`);
}

export interface DebianBaseOptions {
  suite?: string;
  variant?: string;
  mirror?: string;
}

/**
 * A Debian rootfs made by debootstrap, as a cached single-layer OCI layout tagged with the suite.
 * A cold build downloads ~30 MB of packages from the apt mirror (about 1.5 minutes here); needs root.
 */
export async function debianBase(opts: DebianBaseOptions = {}): Promise<BaseImage> {
  const suite = opts.suite ?? 'bookworm';
  const variant = opts.variant ?? 'minbase';
  const mirror = opts.mirror ?? (await findDebianMirror(suite));
  const keyHash = createHash('sha256').update(`${RECIPE_VERSION}\n${suite}\n${variant}\n${mirror}`).digest('hex').slice(0, 16);
  const dir = await cached(`debian-${suite}-${variant}-${keyHash}`, (work) => buildDebianLayout(work, suite, variant, mirror), 15 * 60_000);
  return baseImage(dir, suite);
}

async function buildDebianLayout(layoutDir: string, suite: string, variant: string, mirror: string): Promise<void> {
  const tmp = await tempDir('debootstrap');
  try {
    const rootfs = join(tmp.path, 'rootfs');
    const r = await run('debootstrap', [`--variant=${variant}`, suite, rootfs, mirror], { timeoutMs: 20 * 60_000 }).catch((e: Error) => {
      throw new Error(`debootstrap could not be started (is the debootstrap package installed?): ${e.message}`);
    });
    if (r.code !== 0) {
      const log = await readFile(join(rootfs, 'debootstrap', 'debootstrap.log'), 'utf8').catch(() => '');
      const network = /Failed getting release file|Could not resolve|Connection refused|Network is unreachable|Temporary failure/i.test(r.stdout + r.stderr + log);
      throw new Error(
        `debootstrap ${suite} from ${mirror} failed (exit ${r.code})` +
          (network ? ': the mirror is unreachable (no network?); set GANTRY_TEST_DEBIAN_MIRROR to a reachable mirror' : '') +
          `\n${r.stderr.slice(-2000)}${r.stdout.slice(-2000)}${log.slice(-2000)}`,
      );
    }
    await unmountAllUnder(tmp.path, 'debootstrap target');
    await minimizeRootfs(rootfs);
    await mkdir(join(layoutDir, 'blobs', 'sha256'), { recursive: true });
    const layer = await tarRootfsLayer(rootfs, layoutDir);
    await writeSingleLayerLayout(layoutDir, suite, layer, `debootstrap --variant=${variant} ${suite} ${mirror}`, ['bash']);
  } finally {
    // debootstrap mounts /proc and /sys into the target while configuring packages; a failure
    // part-way can leave them, and deleting through a live /proc or /sys mount must never happen.
    await unmountAllUnder(tmp.path, 'debootstrap target');
    await tmp.cleanup();
  }
}

/** Mount points at or below `dir`, from /proc/self/mountinfo (octal escapes decoded), in mount order. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const decode = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return info
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map(decode)
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
}

/** Unmounts (lazily, children first) everything mounted below `dir`; throws if anything stays. */
export async function unmountAllUnder(dir: string, what: string): Promise<void> {
  for (const mountPoint of (await mountsUnder(dir)).reverse()) {
    await run('umount', ['--lazy', mountPoint]).catch(() => undefined);
  }
  const left = await mountsUnder(dir);
  if (left.length > 0) throw new Error(`${what} ${dir} still has mounts (${left.join(', ')}); not deleting it`);
}

/**
 * What container base images drop from a debootstrap tree: device nodes (the runtime supplies
 * /dev), the host's resolv.conf and hostname (runtime bind mounts), downloaded .debs and apt lists.
 */
async function minimizeRootfs(rootfs: string): Promise<void> {
  const emptyDir = async (dir: string) => {
    for (const name of await readdir(dir).catch(() => [] as string[])) await rm(join(dir, name), { recursive: true, force: true });
  };
  await emptyDir(join(rootfs, 'dev'));
  await emptyDir(join(rootfs, 'proc'));
  await emptyDir(join(rootfs, 'sys'));
  await emptyDir(join(rootfs, 'var', 'lib', 'apt', 'lists'));
  await mkdir(join(rootfs, 'var', 'lib', 'apt', 'lists', 'partial'), { recursive: true });
  for (const name of await readdir(join(rootfs, 'var', 'cache', 'apt', 'archives')).catch(() => [] as string[])) {
    if (name.endsWith('.deb')) await rm(join(rootfs, 'var', 'cache', 'apt', 'archives', name), { force: true });
  }
  for (const name of ['pkgcache.bin', 'srcpkgcache.bin']) await rm(join(rootfs, 'var', 'cache', 'apt', name), { force: true });
  for (const name of ['etc/resolv.conf', 'etc/hostname']) await rm(join(rootfs, name), { force: true });
}

/**
 * Tars the rootfs with GNU tar (numeric owners, sorted names, hardlinks kept) and gzips it into a
 * blob of `layoutDir`, hashing the tar (diff id) and the blob in the same pass.
 */
async function tarRootfsLayer(rootfs: string, layoutDir: string): Promise<{ desc: Descriptor; diffId: string }> {
  const top = (await readdir(rootfs)).sort();
  const child = spawn('tar', ['--create', '--file=-', '--format=gnu', '--numeric-owner', '--sort=name', `--directory=${rootfs}`, '--', ...top], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve(code ?? 1));
  });
  const diff = new DigestingStream();
  const blob = new DigestingStream();
  const tmpFile = join(layoutDir, 'blobs', `.tmp-layer-${randomBytes(4).toString('hex')}`);
  await pipeline(child.stdout, diff, createGzip({ level: 6 }), blob, createWriteStream(tmpFile));
  const code = await exited;
  if (code !== 0) throw new Error(`tar of ${rootfs} failed (exit ${code}): ${stderr}`);
  await rename(tmpFile, join(layoutDir, 'blobs', 'sha256', blob.digest.slice('sha256:'.length)));
  return { desc: { mediaType: MediaType.OciLayerGzip, digest: blob.digest, size: blob.size }, diffId: diff.digest };
}

function hostArchitecture(): string {
  const map: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return map[process.arch] ?? process.arch;
}

async function writeSingleLayerLayout(layoutDir: string, tag: string, layer: { desc: Descriptor; diffId: string }, createdBy: string, cmd: string[]): Promise<void> {
  const writeBlob = async (bytes: Buffer, mediaType: string): Promise<Descriptor> => {
    const digest = sha256(bytes);
    await writeFile(join(layoutDir, 'blobs', 'sha256', digest.slice('sha256:'.length)), bytes);
    return { mediaType, digest, size: bytes.length };
  };
  const config: ImageConfig = {
    created: EPOCH,
    architecture: hostArchitecture(),
    os: 'linux',
    config: { Env: [PATH_ENV], Cmd: cmd },
    rootfs: { type: 'layers', diff_ids: [layer.diffId] },
    history: [{ created: EPOCH, created_by: createdBy }],
  };
  const configDesc = await writeBlob(Buffer.from(JSON.stringify(config)), MediaType.OciConfig);
  const manifest: ImageManifest = { schemaVersion: 2, mediaType: MediaType.OciManifest, config: configDesc, layers: [layer.desc] };
  const manifestDesc = await writeBlob(Buffer.from(JSON.stringify(manifest)), MediaType.OciManifest);
  await writeFile(join(layoutDir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const index = {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: [{ ...manifestDesc, annotations: { 'org.opencontainers.image.ref.name': tag } }],
  };
  await writeFile(join(layoutDir, 'index.json'), JSON.stringify(index));
}
