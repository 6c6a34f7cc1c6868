import { spawn, type ChildProcess } from 'node:child_process';
import { lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { isAbsolute, posix } from 'node:path';
import type { LayerEntry as ArchiveLayerEntry } from '../archive/index.js';
import {
  diffSnapshots,
  IgnoreList,
  inplaceIgnorePaths,
  snapshotLayerEntries,
  takeSnapshot,
  unpackLayer,
  type Change,
  type LayerEntry,
  type Snapshot,
  type SnapshotMode,
  type UnpackStats,
} from '../fs/index.js';
import { GantryError, wrapError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { CA_BUNDLE_FILE, CA_DIR, EXTRA_CA_FILE } from './dev-dir.js';
import { detectContainer, type ContainerProbeOptions } from './inplace-detect.js';
import { placeMounts } from './inplace-mounts.js';
import { forwardOutput, TailBuffer } from './output.js';
import type { RunResult, RunSandbox, RunSpec } from './types.js';
import { validateRunSpec } from './validate-spec.js';

/**
 * The `inplace` backend, Kaniko's model, for unprivileged pods and CI job containers: no mounts,
 * no namespaces. The base image is unpacked over the container's own `/` (unlink before create;
 * never over the ignore list: /proc, /sys, /dev, /var/run, /gantry, /kaniko, /busybox, every mount
 * point, --ignore-path), RUN is spawned directly, and each layer is the difference between two
 * metadata walks of `/` (src/fs/snapshot). `/` is wiped between stages.
 *
 * Because it writes to `/`, creating one refuses unless the process is in a container (see
 * inplace-detect.ts) or `force` is set (`--force`, GANTRY_INPLACE=1).
 *
 * What the caller (the build engine) must do, since the image's /etc replaces the builder's once
 * unpacked: resolve registry host names before the first unpack or through captureLookup()
 * (inplace-dns.ts), never call getaddrinfo/getpwnam (os.userInfo, dns.lookup, ~ expansion), keep
 * its own state under an ignored path (/kaniko, /gantry, a volume), and call snapshot() after every
 * instruction that changes the root (COPY too), or rebaseline() when it recorded the change itself.
 */

export interface InplaceSandboxOptions {
  /** The root the image lives in; `/` in production. RUN commands always see the real `/`. */
  root?: string;
  /** `--ignore-path` values. */
  ignorePaths?: string[];
  /** Kaniko's --ignore-var-run (default true). */
  ignoreVarRun?: boolean;
  /** Extra builder directories never touched (Kaniko's --kaniko-dir when relocated, the context dir). */
  builderDirs?: string[];
  snapshotMode?: SnapshotMode;
  /** Skip the container check (`--force`); GANTRY_INPLACE=1 does the same. */
  force?: boolean;
  logger?: Logger;
  /** Container detection inputs (tests). */
  probe?: ContainerProbeOptions;
}

export interface InplaceLayer {
  changes: Change[];
  /** Time of the walk and diff, in milliseconds. */
  walkMs: number;
  /** Layer entries, read from the root as they are consumed: consume before the next RUN. */
  entries(): AsyncGenerator<ArchiveLayerEntry>;
}

export interface InplaceSandbox extends RunSandbox {
  readonly kind: 'inplace';
  readonly root: string;
  /** The ignore list, for unpackLayer's `ignorePaths` and the snapshot. */
  readonly ignorePaths: readonly string[];
  /** Unpacks one layer onto the root, skipping the ignore list. Invalidates the baseline. */
  unpack(entries: AsyncIterable<LayerEntry>, opts?: { layerName?: string; signal?: AbortSignal; onWarning?: (m: string) => void }): Promise<UnpackStats>;
  /**
   * Takes the baseline the next snapshot() compares with. unpack() and wipeRoot() drop it; run()
   * takes one itself when none is set; anything else that changes the root (COPY) must call this
   * first, once the base is in place.
   */
  rebaseline(): void;
  /** Walks the root, returns what changed since the baseline, and makes this walk the new baseline. Throws without a baseline. */
  snapshot(opts?: { signal?: AbortSignal }): InplaceLayer;
  /** Deletes everything under the root except the ignore list (between stages). */
  wipeRoot(): Promise<void>;
}

export const INPLACE_FORCE_ENV = 'GANTRY_INPLACE';

const SYSTEM_BUNDLES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt', '/etc/ssl/cert.pem'];

/**
 * Reads the command from fd 3, sets supplementary groups, then gid, then uid, and runs the
 * command as its child: libuv's spawn can set uid and gid but always clears the groups, and Node
 * cannot exec. Numeric ids only, so no NSS lookup happens. Exit status and signal pass through.
 */
const GROUPS_HELPER = `
const fs = require('fs');
const { argv, env, cwd, uid, gid, groups } = JSON.parse(fs.readFileSync(3, 'utf8'));
fs.closeSync(3);
process.setgroups(groups);
process.setgid(gid);
process.setuid(uid);
const child = require('child_process').spawn(argv[0], argv.slice(1), { stdio: 'inherit', env, cwd });
for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(s, () => child.kill(s));
child.on('error', (e) => { process.stderr.write(String(e.message) + '\\n'); process.exit(127); });
child.on('exit', (code, sig) => { if (sig) { process.removeAllListeners(sig); process.kill(process.pid, sig); } else process.exit(code); });
`;


function envObject(env: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of env) {
    const eq = kv.indexOf('=');
    out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}

const signalNumber = (name: string) => (osConstants.signals as Record<string, number>)[name] ?? 0;

class InplaceSandboxImpl implements InplaceSandbox {
  readonly kind = 'inplace' as const;
  readonly ignorePaths: readonly string[];
  private readonly ignore: IgnoreList;
  private readonly hostRoot: string;
  private baseline?: Snapshot;
  /** Directories the sandbox touched since the baseline (see inplace-mounts.ts). */
  private touched = new Set<string>();
  private readonly running = new Set<ChildProcess>();
  private closed = false;
  private queue: Promise<unknown> = Promise.resolve();
  /** Layer warnings (no getfattr, so no file capabilities) are the same for every layer: say them once. */
  private readonly warned = new Set<string>();
  private readonly layerLogger: Logger = {
    log: (level, message, fields) => {
      if (level === 'warn') {
        if (this.warned.has(message)) return;
        this.warned.add(message);
      }
      this.logger.log(level, message, fields);
    },
  };

  constructor(
    readonly root: string,
    ignorePaths: string[],
    private readonly mode: SnapshotMode,
    private readonly logger: Logger,
  ) {
    this.ignorePaths = ignorePaths;
    this.ignore = new IgnoreList(ignorePaths);
    this.hostRoot = root === '/' ? '' : root.replace(/\/+$/, '');
  }

  async unpack(entries: AsyncIterable<LayerEntry>, opts: { layerName?: string; signal?: AbortSignal; onWarning?: (m: string) => void } = {}): Promise<UnpackStats> {
    this.baseline = undefined;
    return unpackLayer(this.root, entries, {
      ownership: 'preserve',
      ignorePaths: [...this.ignorePaths],
      layerName: opts.layerName,
      signal: opts.signal,
      onWarning: opts.onWarning ?? ((m) => this.logger.log('warn', m)),
    });
  }

  rebaseline(): void {
    this.baseline = takeSnapshot(this.root, { mode: this.mode, ignore: this.ignore });
    this.touched = new Set();
  }

  snapshot(opts: { signal?: AbortSignal } = {}): InplaceLayer {
    const t0 = performance.now();
    // Without a baseline every file of the base image would look new: a caller bug, not a layer.
    const before = this.baseline;
    if (!before) throw new GantryError('INTERNAL', 'inplace snapshot without a baseline: call rebaseline() after unpacking or wiping, before changing the root');
    const after = takeSnapshot(this.root, { mode: this.mode, ignore: this.ignore, previous: this.baseline, signal: opts.signal });
    const changes = diffSnapshots(before, after, { relaxed: this.touched });
    this.baseline = after;
    this.touched = new Set();
    const walkMs = performance.now() - t0;
    this.logger.log('debug', `snapshot of ${this.root}: ${after.files.size} paths walked, ${changes.length} changed, ${walkMs.toFixed(0)} ms`);
    return { changes, walkMs, entries: () => snapshotLayerEntries(this.root, changes, { logger: this.layerLogger, signal: opts.signal }) };
  }

  async wipeRoot(): Promise<void> {
    const wipe = (inRoot: string) => {
      const hostDir = this.hostRoot + (inRoot === '' ? '/' : inRoot);
      for (const name of readdirSync(hostDir)) {
        const path = `${inRoot}/${name}`;
        if (this.ignore.covers(path)) continue;
        const host = this.hostRoot + path;
        if (this.ignore.hasIgnoredBelow(path) && lstatSync(host).isDirectory()) {
          wipe(path);
          continue;
        }
        rmSync(host, { recursive: true, force: true, maxRetries: 3 });
      }
    };
    try {
      wipe('');
    } catch (err) {
      throw wrapError(err, `wiping ${this.root} between stages`);
    }
    this.baseline = undefined;
    this.touched = new Set();
  }

  run(spec: RunSpec): Promise<RunResult> {
    const next = this.queue.then(() => this.runNow(spec));
    this.queue = next.catch(() => undefined);
    return next;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(
      [...this.running].map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('close', () => resolve());
            killGroup(child);
          }),
      ),
    );
  }

  private async runNow(spec: RunSpec): Promise<RunResult> {
    if (this.closed) throw new GantryError('INTERNAL', 'RUN on a closed sandbox');
    if (this.root !== '/') throw new GantryError('INVALID_ARGUMENT', `the inplace sandbox runs commands on / only, not on ${this.root}`);
    validateRunSpec(spec);
    if (spec.signal?.aborted) throw new GantryError('ABORTED', 'the RUN was cancelled before it started');
    if (spec.network === 'none') this.logger.log('warn', 'RUN --network=none cannot be isolated by the inplace sandbox (no namespaces): the RUN has the network');
    if (!this.baseline) this.rebaseline();
    const cwd = posix.normalize(spec.cwd);
    if (!this.ignore.covers(cwd)) mkdirSync(cwd, { recursive: true, mode: 0o755 });
    const placed = placeMounts(this.root, spec.mounts);
    for (const t of placed.touched) this.touched.add(t);
    const caFiles = this.placeCaFiles(spec.extraCaFiles);
    try {
      return await this.exec(spec, cwd);
    } finally {
      try {
        caFiles?.();
      } finally {
        placed.remove();
      }
    }
  }

  /** Extra CAs at the ns backend's paths under /dev, which is never snapshotted. */
  private placeCaFiles(files: string[] | undefined): (() => void) | undefined {
    if (!files || files.length === 0) return undefined;
    const extra = files.map((f) => readFileSync(f, 'utf8').replace(/\n?$/, '\n')).join('');
    let system = '';
    for (const b of SYSTEM_BUNDLES) {
      try {
        system = readFileSync(b, 'utf8').replace(/\n?$/, '\n');
        break;
      } catch {
        // not in this image
      }
    }
    try {
      mkdirSync(CA_DIR, { recursive: true, mode: 0o755 });
      writeFileSync(EXTRA_CA_FILE, extra, { mode: 0o644 });
      writeFileSync(CA_BUNDLE_FILE, system + extra, { mode: 0o644 });
    } catch (err) {
      this.logger.log('warn', `extra CA certificates are not available to the RUN: cannot write ${CA_DIR}: ${(err as Error).message}`);
      return undefined;
    }
    return () => rmSync(CA_DIR, { recursive: true, force: true });
  }

  private exec(spec: RunSpec, cwd: string): Promise<RunResult> {
    const { uid, gid, groups } = spec.user;
    const env = envObject(spec.env);
    const tail = new TailBuffer(50);
    // Always pass uid and gid: libuv then clears the builder's own supplementary groups.
    const child =
      groups.length === 0
        ? spawn(spec.argv[0]!, spec.argv.slice(1), { cwd, env, uid, gid, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
        : spawn(process.execPath, ['-e', GROUPS_HELPER], { cwd: '/', env: {}, detached: true, stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    this.running.add(child);
    // The command travels on fd 3, not argv: one argument is limited to 128 KiB (MAX_ARG_STRLEN).
    if (groups.length > 0) (child.stdio[3] as NodeJS.WritableStream).end(JSON.stringify({ argv: spec.argv, env, cwd, uid, gid, groups }));
    return new Promise<RunResult>((resolve, reject) => {
      let aborted = false;
      let exit: { code: number | null; sig: NodeJS.Signals | null } | undefined;
      const onAbort = () => {
        aborted = true;
        killGroup(child);
      };
      spec.signal?.addEventListener('abort', onAbort, { once: true });
      forwardOutput(child.stdout!, 'stdout', spec.stdout, tail);
      forwardOutput(child.stderr!, 'stderr', spec.stderr, tail);
      const finish = () => {
        this.running.delete(child);
        spec.signal?.removeEventListener('abort', onAbort);
        if (aborted || this.closed) {
          reject(new GantryError('ABORTED', aborted ? 'the RUN was cancelled' : 'the sandbox was closed while the RUN was running'));
          return;
        }
        const { code, sig } = exit!;
        if (sig) resolve({ exitCode: 128 + signalNumber(sig), signal: sig, tail: tail.lines_() });
        else resolve({ exitCode: code ?? 0, tail: tail.lines_() });
      };
      child.on('error', (err) => {
        this.running.delete(child);
        spec.signal?.removeEventListener('abort', onAbort);
        const e = err as NodeJS.ErrnoException;
        // A missing program is the RUN's failure (exit 127, as a shell reports it), not ours.
        if (e.code === 'ENOENT' || e.code === 'EACCES') {
          const msg = `${spec.argv[0]}: ${e.code === 'ENOENT' ? 'not found' : 'permission denied'}${e.code === 'ENOENT' ? ` (or the working directory ${cwd} is missing)` : ''}`;
          resolve({ exitCode: e.code === 'ENOENT' ? 127 : 126, tail: [...tail.lines_(), msg] });
          return;
        }
        reject(wrapError(err, `starting the RUN ${spec.argv[0]}`, 'SANDBOX_FAILED'));
      });
      child.on('exit', (code, sig) => {
        exit = { code, sig };
        // Kaniko's rule: when the command exits, whatever it left in its process group dies.
        killGroup(child);
        // Something that left the group (setsid) may still hold our pipes: stop waiting for them.
        const timer = setTimeout(() => {
          child.stdout?.destroy();
          child.stderr?.destroy();
        }, 2000);
        timer.unref();
        child.once('close', () => clearTimeout(timer));
      });
      child.on('close', () => {
        if (exit) finish();
      });
    });
  }
}

function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // the group is already empty
  }
}

/**
 * Creates the in-place sandbox. Refuses (UNSUPPORTED) outside a container, unless forced, and
 * when not root: unpacking an image needs to chown.
 */
export function createInplaceSandbox(opts: InplaceSandboxOptions = {}): InplaceSandbox {
  const root = opts.root ?? '/';
  if (!isAbsolute(root)) throw new GantryError('INVALID_ARGUMENT', `the inplace root "${root}" is not absolute`);
  const logger = opts.logger ?? silentLogger;
  if (root === '/') {
    const forced = opts.force === true || (opts.probe?.env ?? process.env)[INPLACE_FORCE_ENV] === '1';
    const found = detectContainer(opts.probe);
    if (!found.inContainer && !forced) {
      throw new GantryError('UNSUPPORTED', `refusing to build in place: this does not look like a container (${found.evidence}), and the inplace sandbox overwrites and deletes files under /`, {
        hint: `run gantry inside a container (the executor image), choose --sandbox=ns or --sandbox=rootless, or pass --force (or set ${INPLACE_FORCE_ENV}=1) if this really is a disposable container`,
      });
    }
    if (!found.inContainer) logger.log('warn', `building in place although no container was detected (${found.evidence}): forced`);
    else logger.log('debug', `inplace sandbox: container detected (${found.evidence})`);
  }
  if (process.getuid?.() !== 0) {
    throw new GantryError('UNSUPPORTED', 'the inplace sandbox needs root: unpacking an image sets file owners', {
      hint: 'run the executor image as root (as Kaniko requires), or use --sandbox=rootless',
    });
  }
  const ignorePaths = inplaceIgnorePaths(root, { ignoreVarRun: opts.ignoreVarRun, extra: opts.ignorePaths, builderDirs: opts.builderDirs });
  return new InplaceSandboxImpl(root, ignorePaths, opts.snapshotMode ?? 'redo', logger);
}

export function isInplaceSandbox(s: RunSandbox): s is InplaceSandbox {
  return s.kind === 'inplace';
}
