import { spawn, type ChildProcess } from 'node:child_process';
import { constants as osConstants, tmpdir } from 'node:os';
import { access, lstat, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { isAbsolute, join, posix } from 'node:path';
import { GantryError, wrapError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { makeDevDir, HOST_DEVICES } from './dev-dir.js';
import { checkOptionValue, formatFstab, type FstabEntry } from './fstab.js';
import { LayerStack } from './layer-stack.js';
import { createDirInUpper, Skeleton, type MountpointKind } from './mountpoints.js';
import { forwardOutput, TailBuffer } from './output.js';
import { findNsTools, SYSTEM_PATH, type NsTools } from './tools.js';
import type { RunMount, RunResult, RunSandbox, RunSpec } from './types.js';
import { validateRunSpec } from './validate-spec.js';

/**
 * The `ns` backend (root with CAP_SYS_ADMIN).
 *
 * Process model: spike variant B2, one `unshare --mount --pid --fork --kill-child` per RUN whose
 * helper shell mounts everything from one generated fstab (overlay, /dev, devpts, shm, proc, sys,
 * resolv.conf, hosts, RUN mounts) and then execs the command. Variant D (a per-build namespace
 * holder, 3.5 ms instead of 5.7 ms) was measured faster, but the numbers favour B2 here:
 * - a sandbox is one layer (a fresh upperdir per RUN), so a holder would be started, mounted and
 *   killed for about one RUN anyway, and the 2 ms it saves disappears in the ~16 ms RUN cycle;
 * - the skeleton of mount points differs per RUN (cache/secret/bind targets), and a lowerdir
 *   must not change under a live overlay mount, so a holder would have to remount per RUN;
 * - every mount, the overlay included, lives only in the RUN's namespace: the kernel unmounts
 *   them when the RUN's last process exits, before our `close` event, so the upperdir is quiescent
 *   when it is diffed and nothing survives a crashed builder (`setpriv --pdeathsig=KILL` on the
 *   outer `unshare`, whose `--kill-child` then takes the whole PID namespace down).
 *
 * Overlay options: `redirect_dir=off` and `metacopy=off` keep every change self-contained in the
 * upperdir (what diffUpperDir requires), `index=off` avoids the inode index a moved upperdir
 * would trip over, `volatile` skips the syncfs of the upper filesystem at unmount (a RUN that
 * writes 500 MB would otherwise wait for the disk).
 *
 * Chain per RUN (all absolute host paths; no `cd` in the helper, which would export OLDPWD):
 *   setpriv --pdeathsig=KILL -- unshare --mount --pid --ipc --uts --fork --kill-child [--net] --
 *     sh -c HELPER mount FSTAB [ip]          (mounts; brings lo up for --network=none)
 *     env -i -- ENV...                       (exactly the RUN's environment)
 *     setpriv --regid=G --groups=… --        (gid and supplementary groups, still uid 0)
 *     unshare --root=MERGED --wd=CWD --setuid=U -- ARGV   (chroot, chdir, then drop to uid U)
 * coreutils `chroot --userspec` would chdir to / and unshare's own `--setgid` clears the
 * supplementary groups, hence the split between setpriv and unshare.
 */

/**
 * What differs when this machinery runs inside a user namespace (the rootless backend, see
 * rootless-sandbox.ts): overlay keeps its markers in `user.overlay.*` (`userxattr`, which
 * refuses `redirect_dir=off` on newer kernels: `nofollow` means the same for us), a fresh sysfs
 * needs a network namespace we own (so /sys is a recursive bind), and with only id 0 mapped
 * setgroups(2) is denied and devpts cannot take `gid=5`.
 */
export interface NsVariant {
  kind: 'ns' | 'rootless';
  userxattr: boolean;
  squashed: boolean;
  /** The hint of a SANDBOX_FAILED error. */
  hint: string;
}

const NS_VARIANT: NsVariant = {
  kind: 'ns',
  userxattr: false,
  squashed: false,
  hint: 'the ns backend needs root with CAP_SYS_ADMIN and overlayfs; try --sandbox=rootless or --sandbox=inplace',
};

export interface NsSandboxOptions {
  /** Read-only layers, topmost first. */
  lowerDirs: string[];
  upperDir: string;
  /** Overlay work directory: same filesystem as upperDir, empty, never reused elsewhere. */
  workDir: string;
  /** Mount point of the merged tree (an empty directory); only mounted inside each RUN. */
  mergedDir: string;
  /** Host file bound read-only on /etc/resolv.conf. */
  resolvConf?: string;
  /** Host file bound read-only on /etc/hosts. */
  hosts?: string;
  logger?: Logger;
  /** Where per-RUN skeletons and /dev directories go; default the OS temp dir. */
  stateDir?: string;
}

// A fixed marker line tells a failed setup apart from a command that exits 125.
const READY = 'gantry-sandbox-ready';
const HELPER = [
  'm=$1 f=$2 ip=$3',
  'shift 3',
  `"$m" -a --fstab "$f" 2>&3 || { echo "mount -a --fstab failed" >&3; exit 125; }`,
  `if [ -n "$ip" ]; then "$ip" link set lo up 2>&3 || { echo "bringing lo up failed" >&3; exit 125; }; fi`,
  `echo ${READY} >&3`,
  'exec 3>&-',
  'exec "$@"',
].join('\n');

/** Overlay mount data is limited to one page; long layer paths hit it with many layers. */
const MAX_MOUNT_DATA = 4000;



function signalNumber(name: string): number {
  return (osConstants.signals as Record<string, number>)[name] ?? 0;
}

const depth = (p: string) => p.split('/').filter(Boolean).length;

class NsSandbox implements RunSandbox {
  readonly kind: 'ns' | 'rootless';
  private readonly running = new Set<ChildProcess>();
  private mounted = false;
  private closed = false;
  private seq = 0;

  constructor(
    private readonly opts: NsSandboxOptions,
    private readonly tools: NsTools,
    private readonly stateDir: string,
    private readonly logger: Logger,
    private readonly variant: NsVariant,
  ) {
    this.kind = variant.kind;
  }

  /** RUNs in one sandbox share an upperdir, which two overlay mounts must never use at once. */
  private queue: Promise<unknown> = Promise.resolve();

  run(spec: RunSpec): Promise<RunResult> {
    const next = this.queue.then(() => this.runNow(spec));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async runNow(spec: RunSpec): Promise<RunResult> {
    if (this.closed) throw new GantryError('INTERNAL', 'RUN on a closed sandbox');
    validateRunSpec(spec);
    if (spec.signal?.aborted) throw new GantryError('ABORTED', 'the RUN was cancelled before it started');
    const runDir = join(this.stateDir, `run-${++this.seq}`);
    try {
      await mkdir(runDir);
      const { fstab, cwd } = await this.prepare(spec, runDir);
      const fstabPath = join(runDir, 'fstab');
      await writeFile(fstabPath, formatFstab(fstab));
      if (spec.signal?.aborted) throw new GantryError('ABORTED', 'the RUN was cancelled before it started');
      return await this.exec(spec, fstabPath, cwd);
    } finally {
      await rm(runDir, { recursive: true, force: true, maxRetries: 3 });
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const waits = [...this.running].map((child) => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('close', () => resolve());
      killRun(child);
    }));
    await Promise.all(waits);
    await rm(this.stateDir, { recursive: true, force: true, maxRetries: 3 });
  }

  /** Skeleton, /dev, cwd and the fstab for one RUN. */
  private async prepare(spec: RunSpec, runDir: string): Promise<{ fstab: FstabEntry[]; cwd: string }> {
    const { upperDir, workDir, mergedDir, lowerDirs } = this.opts;
    const skelDir = join(runDir, 'skel');
    const devDir = join(runDir, 'dev');
    await mkdir(skelDir);
    const stack = new LayerStack([upperDir, ...lowerDirs]);
    const cwd = await createDirInUpper(stack, spec.cwd, this.variant.userxattr ? 'user.overlay.opaque' : 'trusted.overlay.opaque');

    const skeleton = new Skeleton(skelDir, stack);
    const at = (inImage: string) => posix.join(mergedDir, inImage);
    const need = async (target: string, kind: MountpointKind, optional: boolean): Promise<string | undefined> => {
      let path: string | undefined;
      try {
        path = await skeleton.ensure(target, kind);
      } catch (err) {
        // /sys, resolv.conf and hosts are conveniences: an image that has, say, a directory at
        // /etc/resolv.conf keeps it and runs without ours.
        if (!optional) throw err;
        this.logger.log('warn', `not mounting ${target} in RUN: ${(err as Error).message}`);
        return undefined;
      }
      if (path !== undefined) return path;
      if (optional) {
        this.logger.log('warn', `not mounting ${target} in RUN: an earlier command in this layer removed that path`);
        return undefined;
      }
      throw new GantryError('UNSUPPORTED', `cannot mount on ${target}: an earlier command in this layer removed that path`, {
        hint: 'split the RUN into separate RUN instructions',
      });
    };

    const mounts: FstabEntry[] = [];
    const dev = await need('/dev', 'dir', false);
    const proc = await need('/proc', 'dir', false);
    const sys = await need('/sys', 'dir', true);
    const resolv = this.opts.resolvConf ? await need('/etc/resolv.conf', 'file', true) : undefined;
    const hosts = this.opts.hosts ? await need('/etc/hosts', 'file', true) : undefined;

    await makeDevDir(devDir, stack, spec.extraCaFiles);

    const userMounts: Array<{ m: RunMount; path: string }> = [];
    for (const m of [...spec.mounts].sort((a, b) => depth(a.target) - depth(b.target))) {
      let kind: MountpointKind = 'dir';
      if (m.type === 'bind') {
        try {
          kind = (await stat(m.source)).isDirectory() ? 'dir' : 'file';
        } catch (err) {
          throw wrapError(err, `RUN --mount source ${m.source}`, 'NOT_FOUND');
        }
      } else if (m.type === 'cache') {
        await mkdir(m.source, { recursive: true });
      }
      const normal = posix.normalize(m.target);
      if (dev && normal.startsWith('/dev/')) {
        // Below our private /dev: the mount point goes there, not into the image's /dev.
        const rel = normal.slice('/dev/'.length);
        const parts = rel.split('/');
        for (let i = 1; i <= parts.length; i++) {
          const st = await lstat(join(devDir, ...parts.slice(0, i))).catch(() => undefined);
          if (st?.isSymbolicLink()) throw new GantryError('INVALID_ARGUMENT', `cannot mount on ${m.target}: /dev/${parts.slice(0, i).join('/')} is a symlink in the RUN's /dev`);
        }
        const host = join(devDir, rel);
        await mkdir(kind === 'dir' ? host : posix.dirname(host), { recursive: true });
        if (kind === 'file') await writeFile(host, '', { flag: 'a' });
        userMounts.push({ m, path: `${dev}/${rel}` });
        continue;
      }
      userMounts.push({ m, path: (await need(m.target, kind, false))! });
    }
    await skeleton.finish();

    // The overlay itself.
    for (const [what, dir] of [['upper directory', upperDir], ['work directory', workDir], ['skeleton directory', skelDir]] as const) checkOptionValue(what, dir, ':');
    for (const dir of lowerDirs) checkOptionValue('lower directory', dir, ':');
    const data = [
      `lowerdir=${[skelDir, ...lowerDirs].join(':')}`,
      `upperdir=${upperDir}`,
      `workdir=${workDir}`,
      ...(this.variant.userxattr ? ['userxattr', 'redirect_dir=nofollow'] : ['redirect_dir=off']),
      'metacopy=off',
      'index=off',
      'volatile',
    ];
    if (data.join(',').length > MAX_MOUNT_DATA) {
      throw new GantryError('UNSUPPORTED', `the overlay mount options for ${lowerDirs.length} layers exceed the kernel's limit`, {
        hint: 'use a shorter state directory path, or squash layers',
      });
    }
    mounts.push({ source: 'overlay', target: mergedDir, fstype: 'overlay', options: data });

    if (dev) {
      mounts.push({ source: devDir, target: at(dev), fstype: 'none', options: ['bind'] });
      for (const name of HOST_DEVICES) mounts.push({ source: `/dev/${name}`, target: at(`${dev}/${name}`), fstype: 'none', options: ['bind'] });
      mounts.push({ source: 'devpts', target: at(`${dev}/pts`), fstype: 'devpts', options: ['newinstance', 'ptmxmode=0666', 'mode=0620', ...(this.variant.squashed ? [] : ['gid=5']), 'nosuid', 'noexec'] });
      // A RUN mount on /dev/shm (a bigger tmpfs, typically) replaces the default one.
      if (!userMounts.some((u) => u.path === `${dev}/shm`)) {
        mounts.push({ source: 'shm', target: at(`${dev}/shm`), fstype: 'tmpfs', options: ['nosuid', 'nodev', 'noexec', 'mode=1777', 'size=65536k'] });
      }
      mounts.push({ source: 'mqueue', target: at(`${dev}/mqueue`), fstype: 'mqueue', options: ['nosuid', 'nodev', 'noexec'] });
    }
    if (proc) mounts.push({ source: 'proc', target: at(proc), fstype: 'proc', options: ['nosuid', 'nodev', 'noexec'] });
    if (sys && this.variant.kind === 'rootless') mounts.push({ source: '/sys', target: at(sys), fstype: 'none', options: ['rbind', 'ro'] });
    else if (sys) mounts.push({ source: 'sysfs', target: at(sys), fstype: 'sysfs', options: ['ro', 'nosuid', 'nodev', 'noexec'] });
    if (resolv) mounts.push({ source: this.opts.resolvConf!, target: at(resolv), fstype: 'none', options: ['bind', 'ro'] });
    if (hosts) mounts.push({ source: this.opts.hosts!, target: at(hosts), fstype: 'none', options: ['bind', 'ro'] });
    for (const { m, path } of userMounts) {
      const target = at(path);
      // A target below an earlier RUN mount (a tmpfs, a cache dir) is not in the skeleton's view.
      const nested = userMounts.some((o) => o.path !== path && path.startsWith(o.path.endsWith('/') ? o.path : o.path + '/'));
      const mkdirOpt = nested ? ['X-mount.mkdir'] : [];
      if (m.type === 'tmpfs') {
        const size = m.size !== undefined ? [`size=${Math.max(4096, Math.floor(m.size))}`] : [];
        mounts.push({ source: 'tmpfs', target, fstype: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777', ...size, ...mkdirOpt] });
      } else if (m.type === 'cache') {
        mounts.push({ source: m.source, target, fstype: 'none', options: ['bind', ...mkdirOpt] });
      } else {
        mounts.push({ source: m.source, target, fstype: 'none', options: m.readonly ? ['bind', 'ro', ...mkdirOpt] : ['bind', ...mkdirOpt] });
      }
    }

    // A volatile overlay leaves work/incompat/volatile behind; the kernel refuses to mount over
    // it again. We remove it only after our own clean unmount, never one we did not see end.
    const marker = join(workDir, 'work', 'incompat', 'volatile');
    if (await exists(marker)) {
      if (!this.mounted) {
        throw new GantryError('SANDBOX_FAILED', `the overlay work directory ${workDir} was left by an earlier volatile mount`, {
          hint: 'use a fresh upper and work directory: the earlier build may not have ended cleanly',
        });
      }
      await rm(marker, { recursive: true, force: true });
    }
    return { fstab: mounts, cwd };
  }

  private exec(spec: RunSpec, fstabPath: string, cwd: string): Promise<RunResult> {
    const t = this.tools;
    const { uid, gid, groups } = spec.user;
    const ip = spec.network === 'none' ? t.ip : undefined;
    if (spec.network === 'none' && !ip) this.logger.log('warn', '`ip` (iproute2) is not installed: --network=none leaves even the loopback interface down');
    const args = [
      '--pdeathsig=KILL', '--',
      t.unshare, '--mount', '--pid', '--ipc', '--uts', '--fork', '--kill-child', ...(spec.network === 'none' ? ['--net'] : []), '--',
      t.sh, '-c', HELPER, 'gantry-run', t.mount, fstabPath, ip ?? '',
      t.env, '-i', '--', ...spec.env,
      t.setpriv, `--regid=${gid}`, this.variant.squashed ? '--keep-groups' : groups.length > 0 ? `--groups=${groups.join(',')}` : '--clear-groups', '--',
      t.unshare, `--root=${this.opts.mergedDir}`, `--wd=${cwd}`, `--setuid=${uid}`, '--',
      ...spec.argv,
    ];
    const tail = new TailBuffer(50);
    return new Promise<RunResult>((resolve, reject) => {
      const child = spawn(t.setpriv, args, { stdio: ['ignore', 'pipe', 'pipe', 'pipe'], env: { PATH: SYSTEM_PATH, LC_ALL: 'C' } });
      this.running.add(child);
      this.mounted = true;
      let status = '';
      let aborted = false;
      const onAbort = () => {
        aborted = true;
        killRun(child);
      };
      spec.signal?.addEventListener('abort', onAbort, { once: true });
      forwardOutput(child.stdout!, 'stdout', spec.stdout, tail);
      forwardOutput(child.stderr!, 'stderr', spec.stderr, tail);
      const statusStream = child.stdio[3] as NodeJS.ReadableStream;
      statusStream.setEncoding('utf8');
      statusStream.on('data', (c: string) => {
        if (status.length < 16 * 1024) status += c;
      });
      child.on('error', (err) => {
        this.running.delete(child);
        spec.signal?.removeEventListener('abort', onAbort);
        reject(wrapError(err, 'starting the RUN sandbox', 'SANDBOX_FAILED'));
      });
      child.on('close', (code, sig) => {
        this.running.delete(child);
        spec.signal?.removeEventListener('abort', onAbort);
        if (aborted || this.closed) {
          reject(new GantryError('ABORTED', aborted ? 'the RUN was cancelled' : 'the sandbox was closed while the RUN was running'));
          return;
        }
        const ready = status.split('\n').includes(READY);
        if (!ready) {
          const why = status.trim() || tail.lines_().join('\n') || `exit status ${code ?? sig}`;
          reject(new GantryError('SANDBOX_FAILED', `setting up the RUN sandbox failed: ${why}`, {
            hint: this.variant.hint,
          }));
          return;
        }
        if (sig) resolve({ exitCode: 128 + signalNumber(sig), signal: sig, tail: tail.lines_() });
        else resolve({ exitCode: code ?? 0, tail: tail.lines_() });
      });
    });
  }
}

/** Host pids of a process's children (the outer unshare has one: PID 1 of the RUN's namespace). */
function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/**
 * Cancels a RUN. `unshare` ignores SIGTERM while it waits, so this is SIGKILL, aimed at PID 1 of
 * the RUN's namespace: the kernel then kills every process in it, and the outer unshare, which
 * still waits for PID 1, exits only after the namespaces (and the overlay mount) are gone, so
 * the upperdir is quiet when run() settles. Killing the outer unshare instead would work too
 * (--kill-child), but it exits at once and the teardown would race with our caller. Before
 * PID 1 exists, or if it does not die, the outer process is killed.
 */
function killRun(child: ChildProcess): void {
  const pids = child.pid !== undefined ? childPids(child.pid) : [];
  if (pids.length === 0) {
    child.kill('SIGKILL');
    return;
  }
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  const fallback = setTimeout(() => child.kill('SIGKILL'), 2000);
  fallback.unref();
  child.once('exit', () => clearTimeout(fallback));
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Creates the ns sandbox for one layer stack. Nothing is mounted until run(). */
export async function createNsSandbox(opts: NsSandboxOptions, variant: NsVariant = NS_VARIANT): Promise<RunSandbox> {
  if (process.getuid?.() !== 0) {
    throw new GantryError('UNSUPPORTED', 'the ns sandbox needs root', { hint: 'run as root (sudo), or use --sandbox=rootless' });
  }
  const tools = findNsTools();
  for (const [what, dir] of [['upper', opts.upperDir], ['work', opts.workDir], ['merged', opts.mergedDir]] as const) {
    if (!isAbsolute(dir)) throw new GantryError('INVALID_ARGUMENT', `the overlay ${what} directory "${dir}" is not absolute`);
    await mkdir(dir, { recursive: true });
  }
  for (const dir of opts.lowerDirs) {
    if (!isAbsolute(dir)) throw new GantryError('INVALID_ARGUMENT', `the lower directory "${dir}" is not absolute`);
    try {
      await access(dir);
    } catch (err) {
      throw wrapError(err, `lower directory ${dir}`, 'NOT_FOUND');
    }
  }
  for (const [what, file] of [['resolv.conf', opts.resolvConf], ['hosts', opts.hosts]] as const) {
    if (file === undefined) continue;
    try {
      await access(file);
    } catch (err) {
      throw wrapError(err, `the ${what} file to bind into RUNs`, 'NOT_FOUND');
    }
  }
  const stateDir = await mkdtemp(join(opts.stateDir ?? tmpdir(), `gantry-${variant.kind}-`));
  return new NsSandbox(opts, tools, stateDir, opts.logger ?? silentLogger, variant);
}
