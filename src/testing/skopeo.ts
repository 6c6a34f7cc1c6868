import { join } from 'node:path';
import { run, type RunResult } from './exec.js';
import { writeOciLayout, writeSkopeoDir, type TestImage } from './images.js';
import type { TestRegistry } from './registry.js';
import { tempDir } from './tmp.js';

/** skopeo flags to reach `reg` (plain HTTP, or TLS trusting the test CA) with its valid credentials. */
export function skopeoRegistryFlags(reg: TestRegistry, side: 'src' | 'dest' | 'none', creds: boolean | { username: string; password: string } = true): string[] {
  const p = side === 'none' ? '' : `${side}-`;
  const flags = reg.certDir ? [`--${p}cert-dir=${reg.certDir}`] : [`--${p}tls-verify=false`];
  const c = creds === true ? (reg.username !== undefined ? { username: reg.username, password: reg.password ?? '' } : undefined) : creds || undefined;
  if (c) flags.push(`--${p}creds=${c.username}:${c.password}`);
  return flags;
}

/**
 * Pushes a test image to `reg` as `<reg.host>/<repoTag>` with skopeo (an independent client, so
 * tests can seed a registry without trusting our own push code). Throws with skopeo's output on failure.
 */
export async function skopeoPush(img: TestImage, reg: TestRegistry, repoTag: string, opts: { creds?: boolean | { username: string; password: string } } = {}): Promise<RunResult> {
  const tmp = await tempDir('skopeo-src');
  try {
    let source: string;
    if (img.manifest.mediaType.startsWith('application/vnd.oci.')) {
      await writeOciLayout(img, join(tmp.path, 'layout'), 'src');
      source = `oci:${join(tmp.path, 'layout')}:src`;
    } else {
      await writeSkopeoDir(img, join(tmp.path, 'dir'));
      source = `dir:${join(tmp.path, 'dir')}`;
    }
    return await run('skopeo', ['copy', '--insecure-policy', '--retry-times=0', ...skopeoRegistryFlags(reg, 'dest', opts.creds ?? true), source, `docker://${reg.host}/${repoTag}`], {
      check: true,
      env: skopeoEnv(tmp.path),
    });
  } finally {
    await tmp.cleanup();
  }
}

/** The manifest bytes stored under `<reg.host>/<ref>`, read back with `skopeo inspect --raw`. */
export async function skopeoInspectRaw(reg: TestRegistry, ref: string, opts: { creds?: boolean | { username: string; password: string } } = {}): Promise<Buffer> {
  const tmp = await tempDir('skopeo-inspect');
  try {
    const r = await run('skopeo', ['inspect', '--raw', '--retry-times=0', ...skopeoRegistryFlags(reg, 'none', opts.creds ?? true), `docker://${reg.host}/${ref}`], {
      check: true,
      env: skopeoEnv(tmp.path),
    });
    return r.stdoutBuffer;
  } finally {
    await tmp.cleanup();
  }
}

// An empty HOME/XDG so the developer's own auth.json or registries.conf never changes a test.
function skopeoEnv(home: string): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, XDG_RUNTIME_DIR: home, XDG_CONFIG_HOME: join(home, '.config'), REGISTRY_AUTH_FILE: join(home, 'auth.json') };
}
