import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { GantryError } from '../util/errors.js';
import { silentLogger, type Logger } from '../util/logger.js';
import { LayerStack } from './layer-stack.js';
import { createNsSandbox, type NsSandboxOptions, type NsVariant } from './ns-sandbox.js';
import { isMapped, readIdMap, squashWarning, userNamespaceState, USERNS_ENV, type IdMapLine } from './rootless-userns.js';
import type { RunResult, RunSandbox, RunSpec } from './types.js';

/**
 * The `rootless` backend: the `ns` chain (rootless-userns.ts explains the design) run by a
 * builder that already is uid 0 of its own user namespace (enterUserNamespace()). Differences
 * from `ns`: overlay with `userxattr` (Linux >= 5.11; markers are `user.overlay.*`, which the
 * diff reads), /sys is a recursive read-only bind (a fresh sysfs needs a network namespace we
 * own), and in the squashed mode:
 * - RUN as a non-root USER runs as root, with a warning (no other id exists);
 * - supplementary groups are kept as they are (setgroups(2) is denied);
 * - apt is told to run its download sandbox as root (its `_apt` user does not exist here) by a
 *   read-only bind of APT_SANDBOX_CONF: a mount in the RUN only, never a file in a layer.
 * Per-RUN cost is the `ns` chain's: the namespace is entered once per build, not per RUN.
 */

export const APT_SANDBOX_CONF = '/etc/apt/apt.conf.d/00gantry-rootless-sandbox-user';
const APT_SANDBOX_TEXT = '// gantry rootless build with only uid 0 mapped: the _apt user cannot exist here.\nAPT::Sandbox::User "root";\n';

/** Linux >= 5.11: overlayfs in a user namespace (`userxattr`). */
export function kernelSupportsUserxattr(rel = release()): boolean {
  const m = /^(\d+)\.(\d+)/.exec(rel);
  if (!m) return false;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major > 5 || (major === 5 && minor >= 11);
}

let squashWarned = false;

class RootlessSandbox implements RunSandbox {
  readonly kind = 'rootless' as const;
  private aptConf?: Promise<string>;

  constructor(
    private readonly inner: RunSandbox,
    private readonly opts: NsSandboxOptions,
    private readonly squashed: boolean,
    private readonly uidMap: IdMapLine[],
    private readonly gidMap: IdMapLine[],
    private readonly stateDir: string,
    private readonly logger: Logger,
  ) {}

  async run(spec: RunSpec): Promise<RunResult> {
    if (!this.squashed) {
      const { uid, gid, groups } = spec.user;
      const bad = [uid].filter((id) => !isMapped(id, this.uidMap)).map((id) => `uid ${id}`)
        .concat([gid, ...groups].filter((id) => !isMapped(id, this.gidMap)).map((id) => `gid ${id}`));
      if (bad.length > 0) {
        throw new GantryError('UNSUPPORTED', `the rootless RUN cannot run as ${bad.join(', ')}: outside the subordinate id range mapped for this build`, {
          hint: 'give your user a larger range in /etc/subuid and /etc/subgid, or use --sandbox=ns as root',
        });
      }
      return this.inner.run(spec);
    }
    let s = spec;
    if (spec.user.uid !== 0 || spec.user.gid !== 0 || spec.user.groups.some((g) => g !== 0)) {
      this.logger.log('warn', `rootless build with squashed ownership: running this RUN as root instead of ${spec.user.uid}:${spec.user.gid} (only uid 0 exists)`);
      s = { ...s, user: { uid: 0, gid: 0, groups: [] } };
    }
    const aptConf = await this.aptConfFor();
    if (aptConf) s = { ...s, mounts: [...s.mounts, { type: 'bind', source: aptConf, target: APT_SANDBOX_CONF, readonly: true }] };
    return this.inner.run(s);
  }

  async close(): Promise<void> {
    await this.inner.close();
    await rm(this.stateDir, { recursive: true, force: true, maxRetries: 3 });
  }

  /** The apt config file, when the image has apt's config directory (checked per RUN: a RUN may install apt). */
  private async aptConfFor(): Promise<string | undefined> {
    const stack = new LayerStack([this.opts.upperDir, ...this.opts.lowerDirs]);
    const res = await stack.resolve('/etc/apt/apt.conf.d', { followLast: true });
    if (res.missing.length > 0 || res.leaf?.kind !== 'dir') return undefined;
    this.aptConf ??= (async () => {
      const file = join(this.stateDir, 'apt-sandbox-user.conf');
      await writeFile(file, APT_SANDBOX_TEXT, { mode: 0o644 });
      return file;
    })();
    return this.aptConf;
  }
}

/**
 * Creates the rootless sandbox for one layer stack. The builder must already run inside its
 * user namespace (enterUserNamespace(), once per build); outside, this fails with a hint.
 */
export async function createRootlessSandbox(opts: NsSandboxOptions): Promise<RunSandbox> {
  const logger = opts.logger ?? silentLogger;
  const state = userNamespaceState();
  if (state === 'host') {
    throw new GantryError('UNSUPPORTED', 'the rootless RUN sandbox needs the builder to run inside its user namespace', {
      hint: `call enterUserNamespace() at startup (the gantry CLI does this for --sandbox=rootless; ${USERNS_ENV} marks the re-executed process), or run as root with --sandbox=ns`,
    });
  }
  if (!kernelSupportsUserxattr()) {
    throw new GantryError('UNSUPPORTED', `the rootless RUN sandbox needs Linux >= 5.11 (overlayfs in a user namespace); this is ${release()}`, {
      hint: 'use --sandbox=inplace, or run as root with --sandbox=ns',
    });
  }
  const squashed = state === 'squashed';
  if (squashed && !squashWarned) {
    squashWarned = true;
    logger.log('warn', squashWarning(undefined));
  }
  const variant: NsVariant = {
    kind: 'rootless',
    userxattr: true,
    squashed,
    hint: 'the rootless backend needs user namespaces and overlayfs with userxattr (Linux >= 5.11); try --sandbox=inplace',
  };
  const inner = await createNsSandbox(opts, variant);
  const stateDir = await mkdtemp(join(opts.stateDir ?? tmpdir(), 'gantry-rootless-conf-'));
  return new RootlessSandbox(inner, opts, squashed, readIdMap('uid'), readIdMap('gid'), stateDir, logger);
}
