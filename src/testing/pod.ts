/**
 * A simulated Kubernetes pod for the executor image: the image's own files as `/` (an overlay
 * over the unpacked image, so every run starts fresh), fresh mount, pid, uts and ipc namespaces,
 * /proc, a minimal /dev, read-only /sys, the host's resolv.conf and hosts bound read-only, host
 * directories bound where asked, Docker's default capabilities WITHOUT CAP_SYS_ADMIN,
 * no_new_privs, and the image's entrypoint as PID 1. The host's filesystem is gone: the pod
 * pivots into the overlay and detaches the old root, as runc does.
 *
 * Everything before the pivot is done by the host's tools (util-linux unshare/mount/setpriv).
 * After it, nothing of the host is left to exec, so the last steps run in one static busybox
 * (the host's /bin/busybox, already running, applets re-executed through /proc/self/exe):
 * detach the old root, clear the environment, set no_new_privs, exec the entrypoint.
 *
 * Capabilities: the host-side setpriv drops the bounding set to Docker's default but keeps
 * CAP_SYS_ADMIN inheritable; for uid 0, exec grants bounding | inheritable, so busybox can still
 * unmount. The final `setpriv --inh-caps -sys_admin` clears it, and the exec that starts the
 * entrypoint grants only the bounding set.
 *
 * Needs root with CAP_SYS_ADMIN, util-linux, busybox-static and umoci.
 */
import { lstat, readFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { ImageConfig } from '../oci/types.js';
import { run } from './exec.js';
import { tempDir, type TempDir } from './tmp.js';

/** What `docker run` would take from the image config. */
export interface PodImageConfig {
  entrypoint: string[];
  cmd: string[];
  env: string[];
  workingDir: string;
  user: string;
}

export interface UnpackedImage {
  /** The image's root filesystem, never written to by a pod (it is an overlay's lower layer). */
  rootfs: string;
  config: PodImageConfig;
  manifestDigest: string;
  cleanup(): Promise<void>;
}

export interface PodMount {
  /** Host file or directory. */
  host: string;
  /** Absolute path inside the pod. */
  path: string;
  readOnly?: boolean;
}

export interface PodOptions {
  /** An image unpacked once with unpackImage (for several pods), or a layout to unpack for this one. */
  image: UnpackedImage | { layout: string; tag: string };
  /** Replaces the image ENTRYPOINT, as a pod's `command` does (the image CMD is then dropped too). */
  command?: string[];
  /** Replaces the image CMD, as a pod's `args` does. */
  args?: string[];
  /** Added to (and overriding) the image's Env. */
  env?: Record<string, string>;
  mounts?: PodMount[];
  /** `host` shares the host's network (a pod with hostNetwork, or reaching 127.0.0.1 registries); `none` has only a loopback. */
  network?: 'host' | 'none';
  workingDir?: string;
  hostname?: string;
  input?: string;
  /** Kills the whole pod after this long (default 120 s). */
  timeoutMs?: number;
}

export interface PodResult {
  /** Exit code of PID 1; 128 + signal when it died of one. */
  code: number;
  stdout: string;
  stderr: string;
}

/** Docker's default capability set (moby oci/caps/defaults.go): no CAP_SYS_ADMIN, no CAP_NET_ADMIN. */
export const DOCKER_DEFAULT_CAPS: readonly string[] = [
  'chown', 'dac_override', 'fsetid', 'fowner', 'mknod', 'net_raw', 'setgid', 'setuid',
  'setfcap', 'setpcap', 'net_bind_service', 'sys_chroot', 'kill', 'audit_write',
];

const CAP_NUMBERS: Record<string, number> = {
  chown: 0, dac_override: 1, fowner: 3, fsetid: 4, kill: 5, setgid: 6, setuid: 7, setpcap: 8,
  net_bind_service: 10, net_raw: 13, sys_chroot: 18, mknod: 27, audit_write: 29, setfcap: 31,
};

/** The CapEff mask (as /proc/PID/status prints it) of DOCKER_DEFAULT_CAPS. */
export function dockerDefaultCapMask(): string {
  let mask = 0n;
  for (const c of DOCKER_DEFAULT_CAPS) mask |= 1n << BigInt(CAP_NUMBERS[c]!);
  return mask.toString(16).padStart(16, '0');
}

const BUSYBOX = process.env.GANTRY_TEST_BUSYBOX ?? '/bin/busybox';
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const OLD_ROOT = '.pod-oldroot';
const DEV_NODES = ['null', 'zero', 'full', 'random', 'urandom', 'tty'];

const refName = 'org.opencontainers.image.ref.name';

interface Desc {
  mediaType: string;
  digest: string;
  annotations?: Record<string, string>;
  platform?: { os: string; architecture: string };
}

async function readBlobJson<T>(layout: string, digest: string): Promise<T> {
  const [alg, hex] = digest.split(':');
  return JSON.parse(await readFile(join(layout, 'blobs', alg!, hex!), 'utf8')) as T;
}

/** The manifest digest and config of `tag` in an OCI layout, read straight from the blobs. */
export async function readLayoutImage(layout: string, tag: string): Promise<{ manifestDigest: string; config: ImageConfig }> {
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Desc[] };
  let desc = index.manifests.find((m) => m.annotations?.[refName] === tag);
  if (!desc) throw new Error(`${layout}: no image tagged ${tag} (has: ${index.manifests.map((m) => m.annotations?.[refName] ?? m.digest).join(', ')})`);
  for (let depth = 0; /index|manifest\.list/.test(desc.mediaType); depth++) {
    if (depth > 4) throw new Error(`${layout}:${tag}: nested indexes too deep`);
    const nested: { manifests: Desc[] } = await readBlobJson(layout, desc.digest);
    const arch = process.arch === 'x64' ? 'amd64' : process.arch;
    const match: Desc | undefined = nested.manifests.find((m) => m.platform?.os === 'linux' && m.platform.architecture === arch);
    if (!match) throw new Error(`${layout}:${tag}: no linux/${arch} image in index ${desc.digest}`);
    desc = match;
  }
  const manifest: { config: { digest: string } } = await readBlobJson(layout, desc.digest);
  return { manifestDigest: desc.digest, config: await readBlobJson<ImageConfig>(layout, manifest.config.digest) };
}

/** Unpacks `layout:tag` with umoci (an independent reader of our layers) for one or more pods. */
export async function unpackImage(layout: string, tag: string): Promise<UnpackedImage> {
  const { manifestDigest, config } = await readLayoutImage(layout, tag);
  const tmp = await tempDir('pod-image');
  try {
    const rootfs = join(tmp.path, 'rootfs');
    await run('umoci', ['raw', 'unpack', '--image', `${layout}:${tag}`, rootfs], { check: true, timeoutMs: 120_000 });
    const c = config.config ?? {};
    return {
      rootfs,
      manifestDigest,
      config: {
        entrypoint: c.Entrypoint ?? [],
        cmd: c.Cmd ?? [],
        env: c.Env ?? [],
        workingDir: c.WorkingDir || '/',
        user: c.User ?? '',
      },
      cleanup: () => tmp.cleanup(),
    };
  } catch (err) {
    await tmp.cleanup();
    throw err;
  }
}

/** Single-quotes `s` for /bin/sh. */
export function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function absolute(path: string, what: string): string {
  if (!path.startsWith('/')) throw new Error(`pod: ${what} must be an absolute path, got ${JSON.stringify(path)}`);
  const p = posix.normalize(path);
  if (p.split('/').includes('..')) throw new Error(`pod: ${what} must not contain "..": ${path}`);
  return p;
}

/**
 * argv[0] resolved in the image: busybox, which execs the entrypoint, would otherwise run its own
 * applet of that name. Unlike runc, the program then sees the resolved path as its argv[0].
 */
async function resolveInImage(rootfs: string, name: string, path: string): Promise<string> {
  if (name.includes('/')) return name;
  for (const dir of path.split(':').filter((d) => d.startsWith('/'))) {
    const candidate = posix.join(dir, name);
    if (await lstat(join(rootfs, candidate)).then(() => true, () => false)) return candidate;
  }
  throw new Error(`pod: exec: "${name}": executable file not found in $PATH (${path})`);
}

function mergeEnv(image: string[], extra: Record<string, string>, hostname: string): string[] {
  const env = new Map<string, string>();
  for (const kv of image) {
    const eq = kv.indexOf('=');
    if (eq > 0) env.set(kv.slice(0, eq), kv.slice(eq + 1));
  }
  if (!env.has('PATH')) env.set('PATH', DEFAULT_PATH);
  env.set('HOSTNAME', hostname);
  for (const [k, v] of Object.entries(extra)) env.set(k, v);
  return [...env].map(([k, v]) => `${k}=${v}`);
}

/** The host-side setup script, run as PID 1 of the new namespaces by the host's /bin/sh. */
function setupScript(o: { rootfs: string; scratch: string; mounts: PodMount[]; workingDir: string; hostname: string; network: 'host' | 'none'; env: string[]; argv: string[] }): string {
  const R = `${o.scratch}/root`;
  const r = (p: string) => shq(R + p);
  const lines = [
    'set -eu',
    `mount -t tmpfs -o mode=0700 pod-scratch ${shq(o.scratch)}`,
    `mkdir ${shq(o.scratch + '/upper')} ${shq(o.scratch + '/work')} ${shq(R)}`,
    `mount -t overlay pod-root -o ${shq(`lowerdir=${o.rootfs},upperdir=${o.scratch}/upper,workdir=${o.scratch}/work`)} ${shq(R)}`,
    `mkdir -p ${r('/proc')} ${r('/dev')} ${r('/sys')} ${r('/etc')} ${r('/' + OLD_ROOT)}`,
    `mount -t proc -o nosuid,nodev,noexec proc ${r('/proc')}`,
    `mount -t tmpfs -o nosuid,noexec,mode=0755,size=1m pod-dev ${r('/dev')}`,
    ...DEV_NODES.map((n) => `touch ${r('/dev/' + n)} && mount --bind /dev/${n} ${r('/dev/' + n)}`),
    `mkdir ${r('/dev/pts')} ${r('/dev/shm')} && mount -t tmpfs -o nosuid,nodev,noexec,mode=1777,size=64m shm ${r('/dev/shm')}`,
    `ln -s /proc/self/fd ${r('/dev/fd')} && ln -s /proc/self/fd/0 ${r('/dev/stdin')} && ln -s /proc/self/fd/1 ${r('/dev/stdout')} && ln -s /proc/self/fd/2 ${r('/dev/stderr')}`,
    `mount -t sysfs -o ro,nosuid,nodev,noexec sysfs ${r('/sys')}`,
    `printf '%s\\n' ${shq(o.hostname)} > ${shq(o.scratch + '/hostname')}`,
    `hostname ${shq(o.hostname)}`,
  ];
  // A symlinked target would be followed on the host side: such images get no file bound there.
  const bindFile = (src: string, dst: string) => `if [ ! -L ${r(dst)} ] && [ -e ${shq(src)} ]; then touch ${r(dst)} && mount -o bind,ro ${shq(src)} ${r(dst)}; fi`;
  lines.push(bindFile(o.scratch + '/hostname', '/etc/hostname'), bindFile('/etc/resolv.conf', '/etc/resolv.conf'), bindFile('/etc/hosts', '/etc/hosts'));
  for (const m of o.mounts) {
    const dst = absolute(m.path, 'mount path');
    lines.push(`if [ -d ${shq(m.host)} ]; then mkdir -p ${r(dst)}; else mkdir -p "$(dirname ${r(dst)})" && touch ${r(dst)}; fi`);
    lines.push(`mount --rbind ${m.readOnly ? '-o ro ' : ''}${shq(m.host)} ${r(dst)}`);
  }
  if (o.network === 'none') lines.push('if command -v ip >/dev/null; then ip link set lo up; fi');
  lines.push(`mkdir -p ${r(o.workingDir)}`, `cd ${shq(R)}`);
  // Past the pivot only busybox runs: see the file comment.
  const inner = `pivot_root . ${OLD_ROOT} && umount -l /${OLD_ROOT} && rmdir /${OLD_ROOT} && cd "$0" && exec env -i "$@"`;
  const bounding = ['-all', ...DOCKER_DEFAULT_CAPS.map((c) => `+${c}`)].join(',');
  lines.push(
    [
      'exec setpriv --inh-caps -all,+sys_admin',
      `setpriv --bounding-set ${bounding}`,
      `${shq(BUSYBOX)} sh -c ${shq(inner)} ${shq(o.workingDir)}`,
      ...o.env.map(shq),
      'setpriv --nnp --inh-caps -sys_admin --',
      ...o.argv.map(shq),
    ].join(' '),
  );
  return lines.join('\n') + '\n';
}

/** Runs one pod to completion; see the file comment for what it isolates. */
export async function runInPod(opts: PodOptions): Promise<PodResult> {
  const owned = 'rootfs' in opts.image ? undefined : await unpackImage(opts.image.layout, opts.image.tag);
  const image = 'rootfs' in opts.image ? opts.image : owned!;
  let scratch: TempDir | undefined;
  try {
    const cfg = image.config;
    if (cfg.user && !/^(0|root)(:(0|root))?$/.test(cfg.user)) throw new Error(`pod: images running as USER ${cfg.user} are not supported by this simulation`);
    const hostname = opts.hostname ?? 'pod';
    const env = mergeEnv(cfg.env, opts.env ?? {}, hostname);
    const argv = opts.command ? [...opts.command, ...(opts.args ?? [])] : [...cfg.entrypoint, ...(opts.args ?? cfg.cmd)];
    if (argv.length === 0) throw new Error('pod: no command: the image has no ENTRYPOINT or CMD and none was given');
    const path = env.find((e) => e.startsWith('PATH='))!.slice(5);
    argv[0] = await resolveInImage(image.rootfs, argv[0]!, path);
    scratch = await tempDir('pod');
    // Both end up in the overlay's comma-separated option string.
    if (/[,:\s]/.test(image.rootfs + scratch.path)) throw new Error(`pod: paths with commas, colons or spaces cannot be overlay layers: ${image.rootfs}, ${scratch.path}`);
    const script = setupScript({
      rootfs: image.rootfs,
      scratch: scratch.path,
      mounts: opts.mounts ?? [],
      workingDir: absolute(opts.workingDir ?? cfg.workingDir, 'working dir'),
      hostname,
      network: opts.network ?? 'host',
      env,
      argv,
    });
    const ns = ['--mount', '--pid', '--uts', '--ipc', '--fork', '--kill-child', '--propagation', 'private', ...(opts.network === 'none' ? ['--net'] : [])];
    const r = await run('unshare', [...ns, '--', '/bin/sh', '-c', script, 'pod-setup'], {
      env: { PATH: DEFAULT_PATH },
      input: opts.input ?? '',
      timeoutMs: opts.timeoutMs ?? 120_000,
    });
    return { code: r.code, stdout: r.stdout, stderr: r.stderr };
  } finally {
    await scratch?.cleanup();
    await owned?.cleanup();
  }
}
