/**
 * What every RUN of one build shares: the sandbox backend (chosen once, on the first RUN or
 * before any work when the Dockerfile has RUN), secrets, the persistent cache-mount directory,
 * the default network and the generated /etc/hosts.
 */
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { backendNotImplemented, createInplaceSandbox, detectSandbox, type InplaceSandbox, type SandboxKind } from '../run/index.js';
import { GantryError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';
import type { BuildOptions } from './options.js';

export interface SecretSource {
  src?: string;
  env?: string;
}

export interface RunContextOptions {
  sandbox: 'auto' | SandboxKind;
  secrets: Record<string, SecretSource>;
  /** Where secret `env` sources are read. */
  env: NodeJS.ProcessEnv;
  cacheDir: string;
  network: 'default' | 'none' | 'host';
  addHosts: Array<{ host: string; ip: string }>;
  /** The build's temp directory (0700): hosts file, detection probes. */
  workDir: string;
  logger: Logger;
  inplace?: InplaceOptions;
}

export type InplaceOptions = NonNullable<BuildOptions['inplace']>;

/** `~/.cache/gantry/run-cache`, or `$XDG_CACHE_HOME/gantry/run-cache`. */
export function defaultRunCacheDir(env: NodeJS.ProcessEnv): string {
  const base = env.XDG_CACHE_HOME || join(env.HOME || homedir(), '.cache');
  return join(base, 'gantry', 'run-cache');
}

/** Picks the backend: `auto` takes what detectSandbox finds; an explicit kind must be usable here. */
export async function chooseSandbox(want: 'auto' | SandboxKind, stateDir: string, logger: Logger, inplace: InplaceOptions = {}): Promise<SandboxKind> {
  const detection = await detectSandbox({ stateDir });
  // --force (or a root other than `/`, which overwrites nothing of this machine) makes inplace
  // usable outside a detected container; it still needs root to set owners.
  const inplaceForced = (inplace.force === true || (inplace.root !== undefined && inplace.root !== '/')) && process.getuid?.() === 0;
  if (inplaceForced) {
    const c = detection.checks.find((x) => x.kind === 'inplace');
    if (c && !c.usable) {
      c.usable = true;
      c.reason = inplace.force ? 'forced (--force), although no container was detected' : `building in ${inplace.root}`;
      detection.kind ??= 'inplace';
    }
  }
  const reasons = detection.checks.map((c) => `${c.kind}: ${c.reason}`).join('; ');
  if (want === 'auto') {
    const check = detection.checks.find((c) => c.kind === detection.kind);
    if (!detection.kind || !check) {
      throw new GantryError('UNSUPPORTED', `no RUN sandbox works on this machine (${reasons})`, {
        hint: 'run gantry as root with CAP_SYS_ADMIN (a VM, sudo, or a privileged pod) so the ns sandbox can be used',
      });
    }
    logger.log('info', `RUN sandbox: ${detection.kind} (${check.reason})`, { sandbox: detection.kind });
    return detection.kind;
  }
  const check = detection.checks.find((c) => c.kind === want);
  if (check && !check.implemented && want !== 'ns') throw backendNotImplemented(want);
  if (!check || !check.usable) {
    throw new GantryError('UNSUPPORTED', `--sandbox=${want} cannot be used on this machine: ${check?.reason ?? 'unknown backend'}`, {
      hint: `use --sandbox=auto to pick what works here (${reasons})`,
    });
  }
  logger.log('info', `RUN sandbox: ${want} (${check.reason})`, { sandbox: want });
  return want;
}

export class RunContext {
  private kind?: Promise<SandboxKind>;
  private hosts?: Promise<string>;
  private resolv?: Promise<string | undefined>;
  /** Tails of `sharing=locked` cache mounts, by cache directory. */
  readonly locks = new Map<string, Promise<void>>();
  /** How many RUNs use each cache directory right now (`sharing=private`). */
  readonly inUse = new Map<string, number>();

  constructor(readonly opts: RunContextOptions) {}

  sandbox(): Promise<SandboxKind> {
    return (this.kind ??= chooseSandbox(this.opts.sandbox, this.opts.workDir, this.opts.logger, this.opts.inplace));
  }

  private inplaceBox?: InplaceSandbox;

  /**
   * The one inplace sandbox of the build (every stage is built in its root, one after the
   * other). `builderDirs`: what the builder keeps under the root and must survive wipes and stay
   * out of layers (work dir, context, DOCKER_CONFIG, outputs, cache dir).
   */
  inplaceSandbox(builderDirs: string[]): InplaceSandbox {
    const o = this.opts.inplace ?? {};
    return (this.inplaceBox ??= createInplaceSandbox({
      ...(o.root !== undefined ? { root: o.root } : {}),
      ...(o.ignorePaths ? { ignorePaths: o.ignorePaths } : {}),
      ...(o.ignoreVarRun !== undefined ? { ignoreVarRun: o.ignoreVarRun } : {}),
      ...(o.snapshotMode ? { snapshotMode: o.snapshotMode } : {}),
      ...(o.force ? { force: true } : {}),
      builderDirs,
      logger: this.opts.logger,
    }));
  }

  /** The inplace sandbox, once inplaceSandbox() created it. */
  get inplace(): InplaceSandbox | undefined {
    return this.inplaceBox;
  }

  /** A hosts file like BuildKit's: localhost for IPv4/IPv6, then `--add-host` entries. */
  hostsFile(): Promise<string> {
    return (this.hosts ??= (async () => {
      const file = join(this.opts.workDir, 'run-hosts');
      const lines = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback', ...this.opts.addHosts.map((h) => `${h.ip}\t${h.host}`)];
      await mkdir(this.opts.workDir, { recursive: true });
      await writeFile(file, lines.join('\n') + '\n', { mode: 0o644 });
      return file;
    })());
  }

  /** The host's resolv.conf, bound read-only into RUNs that use the host network. */
  resolvConf(): Promise<string | undefined> {
    return (this.resolv ??= access('/etc/resolv.conf').then(
      () => '/etc/resolv.conf',
      () => undefined,
    ));
  }

  /** The secret's value, or undefined when the build was given no secret of that id. */
  async secretValue(id: string): Promise<Buffer | undefined> {
    const s = this.opts.secrets[id];
    if (!s) return undefined;
    if (s.src !== undefined) {
      try {
        return await readFile(s.src);
      } catch (err) {
        throw new GantryError('NOT_FOUND', `secret ${id}: cannot read ${s.src}: ${(err as Error).message}`, { hint: 'check the src= path of --secret' });
      }
    }
    const name = s.env ?? id;
    const v = this.opts.env[name];
    if (v === undefined) throw new GantryError('NOT_FOUND', `secret ${id}: environment variable ${name} is not set`, { hint: 'export the variable, or give the secret as a file with src=' });
    return Buffer.from(v);
  }
}
