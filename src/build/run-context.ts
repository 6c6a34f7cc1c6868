/**
 * What every RUN of one build shares: the sandbox backend (chosen once, on the first RUN or
 * before any work when the Dockerfile has RUN), secrets, the persistent cache-mount directory,
 * the default network and the generated /etc/hosts.
 */
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { backendNotImplemented, detectSandbox, type SandboxKind } from '../run/index.js';
import { GantryError } from '../util/errors.js';
import type { Logger } from '../util/logger.js';

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
}

/** `~/.cache/gantry/run-cache`, or `$XDG_CACHE_HOME/gantry/run-cache`. */
export function defaultRunCacheDir(env: NodeJS.ProcessEnv): string {
  const base = env.XDG_CACHE_HOME || join(env.HOME || homedir(), '.cache');
  return join(base, 'gantry', 'run-cache');
}

/**
 * src/run has the inplace backend (Kaniko's model: unpack onto `/`, walk snapshots), but the
 * build engine still takes RUN layers from an overlay upper dir; until it drives the walk
 * snapshotter, choosing inplace must fail rather than build wrong layers.
 */
function refuseUndriven(kind: SandboxKind): void {
  if (kind === 'inplace') {
    throw new GantryError('UNSUPPORTED', 'RUN with the inplace sandbox is not supported by the build engine yet (only ns and rootless are)', {
      hint: 'run gantry as root with CAP_SYS_ADMIN (ns), or as a user with user namespaces (rootless)',
    });
  }
}

/** Picks the backend: `auto` takes what detectSandbox finds; an explicit kind must be usable here. */
export async function chooseSandbox(want: 'auto' | SandboxKind, stateDir: string, logger: Logger): Promise<SandboxKind> {
  const detection = await detectSandbox({ stateDir });
  const reasons = detection.checks.map((c) => `${c.kind}: ${c.reason}`).join('; ');
  if (want === 'auto') {
    const check = detection.checks.find((c) => c.kind === detection.kind);
    if (!detection.kind || !check) {
      throw new GantryError('UNSUPPORTED', `no RUN sandbox works on this machine (${reasons})`, {
        hint: 'run gantry as root with CAP_SYS_ADMIN (a VM, sudo, or a privileged pod) so the ns sandbox can be used',
      });
    }
    refuseUndriven(detection.kind);
    logger.log('info', `RUN sandbox: ${detection.kind} (${check.reason})`, { sandbox: detection.kind });
    return detection.kind;
  }
  refuseUndriven(want);
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
    return (this.kind ??= chooseSandbox(this.opts.sandbox, this.opts.workDir, this.opts.logger));
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
