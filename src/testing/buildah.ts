import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { unmountAllUnder } from './bases.js';
import { run, type RunResult } from './exec.js';
import { tempDir } from './tmp.js';

export interface BuildahBuildOptions {
  contextDir: string;
  /** Path of the Dockerfile; default `<contextDir>/Dockerfile`. */
  dockerfile?: string;
  /** Image names as the Dockerfile's FROM lines spell them (`busybox`, `debian:bookworm`) -> `oci:DIR:TAG`. */
  baseImages?: Record<string, string>;
  buildArgs?: Record<string, string>;
  target?: string;
  /** Where to write the result as an OCI layout; default a fresh temp dir removed by `cleanup`. */
  outDir?: string;
  /** Tag of the result inside the layout; default `latest`. */
  tag?: string;
  timeoutMs?: number;
}

export interface BuildahBuildResult {
  ociDir: string;
  tag: string;
  ref: `oci:${string}`;
  /** buildah bud's combined output, for a failing test's message. */
  log: string;
  /** Removes `ociDir` when buildahBuild created it; a no-op for a caller's `outDir`. */
  cleanup(): Promise<void>;
}

/**
 * The name buildah looks up for a Dockerfile's FROM value when short names are disabled and no
 * search registries are configured: a bare name (no registry host) resolves to `localhost/<name>`.
 */
export function localStorageName(fromName: string): string {
  if (fromName.includes('@')) throw new Error(`base image "${fromName}": digest references cannot be given as a base image name; use a tag`);
  const slash = fromName.indexOf('/');
  const first = slash < 0 ? '' : fromName.slice(0, slash);
  const qualified = first !== '' && (first.includes('.') || first.includes(':') || first === 'localhost');
  const name = qualified ? fromName : `localhost/${fromName}`;
  const lastPart = name.slice(name.lastIndexOf('/') + 1);
  return lastPart.includes(':') ? name : `${name}:latest`;
}

// Our own permissive policy, so the host's /etc/containers/policy.json (absent, or strict) never matters.
const POLICY = JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] });
// No search registries and no short-name aliases: a FROM name can only match the storage we filled.
const REGISTRIES = 'unqualified-search-registries = []\nshort-name-mode = "disabled"\n';

/**
 * Builds a Dockerfile with `buildah bud --isolation=chroot` (needs root, no user namespaces) in a
 * throw-away storage (vfs driver, own --root/--runroot), so system storage is never touched and no
 * base image is ever pulled from a registry: each of `baseImages` is copied into that storage with
 * skopeo under the name the Dockerfile uses. The result is pushed to an OCI layout.
 */
export async function buildahBuild(opts: BuildahBuildOptions): Promise<BuildahBuildResult> {
  const work = await tempDir('buildah');
  const ownOut = opts.outDir === undefined ? await tempDir('buildah-out') : undefined;
  const ociDir = opts.outDir ?? join(ownOut!.path, 'layout');
  const tag = opts.tag ?? 'latest';
  const root = join(work.path, 'root');
  const runroot = join(work.path, 'runroot');
  const home = join(work.path, 'home');
  const policy = join(work.path, 'policy.json');
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: home,
    XDG_RUNTIME_DIR: join(work.path, 'xdg-run'),
    XDG_CONFIG_HOME: join(home, '.config'),
    XDG_DATA_HOME: join(home, '.local', 'share'),
    TMPDIR: join(work.path, 'tmp'),
    CONTAINERS_REGISTRIES_CONF: join(work.path, 'registries.conf'),
    CONTAINERS_CONF: join(work.path, 'containers.conf'),
    REGISTRY_AUTH_FILE: join(work.path, 'auth.json'),
    BUILDAH_ISOLATION: 'chroot',
  };
  const storage = ['--root', root, '--runroot', runroot, '--storage-driver', 'vfs'];
  const timeoutMs = opts.timeoutMs ?? 10 * 60_000;
  const buildah = (args: string[]) => run('buildah', [...storage, ...args], { env, timeoutMs });
  const check = (what: string, r: RunResult) => {
    if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}):\n${(r.stderr + r.stdout).slice(-6000)}`);
    return r;
  };

  try {
    for (const d of [root, runroot, home, env.XDG_RUNTIME_DIR!, env.TMPDIR!]) await mkdir(d, { recursive: true, mode: 0o700 });
    await writeFile(policy, POLICY);
    await writeFile(env.CONTAINERS_REGISTRIES_CONF!, REGISTRIES);
    await writeFile(env.CONTAINERS_CONF!, '');
    // buildah push stats REGISTRY_AUTH_FILE when it is set; an empty one means no credentials at all.
    await writeFile(env.REGISTRY_AUTH_FILE!, JSON.stringify({ auths: {} }));

    const storageRef = `containers-storage:[vfs@${root}+${runroot}]`;
    for (const [fromName, source] of Object.entries(opts.baseImages ?? {})) {
      const name = localStorageName(fromName);
      check(
        `skopeo copy ${source} -> ${name}`,
        await run('skopeo', ['copy', '--quiet', '--insecure-policy', source, `${storageRef}${name}`], { env, timeoutMs }),
      );
    }

    const output = 'localhost/gantry-buildah-output:latest';
    const bud = ['bud', '--signature-policy', policy, '--isolation=chroot', '--layers=false', '--pull=never', '--format=oci', '-f', resolve(opts.dockerfile ?? join(opts.contextDir, 'Dockerfile')), '-t', output];
    for (const [k, v] of Object.entries(opts.buildArgs ?? {})) bud.push('--build-arg', `${k}=${v}`);
    if (opts.target !== undefined) bud.push('--target', opts.target);
    bud.push(resolve(opts.contextDir));
    const built = check(`buildah ${bud.join(' ')}`, await buildah(bud));

    await mkdir(ociDir, { recursive: true });
    check('buildah push', await buildah(['push', '--signature-policy', policy, '--quiet', output, `oci:${ociDir}:${tag}`]));
    return {
      ociDir,
      tag,
      ref: `oci:${ociDir}:${tag}`,
      log: built.stdout + built.stderr,
      cleanup: async () => {
        if (ownOut) await ownOut.cleanup();
      },
    };
  } catch (e) {
    if (ownOut) await ownOut.cleanup();
    throw e;
  } finally {
    await removeStorage(buildah, work.path);
    await work.cleanup();
  }
}

/**
 * buildah can leave working containers and their mounts behind (a failed build, or overlay if the
 * driver ever changes); deleting a directory with a live mount below it would fail or, worse,
 * delete through it. So: remove containers and images, unmount anything still mounted under
 * `dir`, then the caller deletes `dir`.
 */
async function removeStorage(buildah: (args: string[]) => Promise<RunResult>, dir: string): Promise<void> {
  await buildah(['rm', '--all']).catch(() => undefined);
  await buildah(['umount', '--all']).catch(() => undefined);
  await buildah(['rmi', '--all', '--force']).catch(() => undefined);
  await unmountAllUnder(dir, 'buildah storage');
}

/** Whether `buildah` is installed and runs (a test asserts this instead of silently skipping). */
export async function buildahVersion(): Promise<string> {
  const r = await run('buildah', ['--version']);
  if (r.code !== 0) throw new Error(`buildah --version failed: ${r.stderr}`);
  return r.stdout.trim();
}
