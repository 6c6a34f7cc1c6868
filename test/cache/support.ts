import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { BuildOptions } from '../../src/build/index.js';
import { startFaultProxy, type FaultProxy } from '../../src/testing/fault-proxy.js';
import { makeBusyboxImage } from '../../src/testing/images.js';
import { startRegistry, type TestRegistry } from '../../src/testing/registry.js';
import { skopeoPush } from '../../src/testing/skopeo.js';

/**
 * What every layer-cache test stands on: a real registry holding a busybox base, reached through a
 * fault proxy that records every request (so tests count layer blob GETs), and temp contexts.
 */
export interface CacheFixture {
  reg: TestRegistry;
  proxy: FaultProxy;
  /** The base image reference, through the proxy. */
  base: string;
  /** A temp build context with a Dockerfile and files; removed by close(). */
  context(dockerfile: string, files: Record<string, string>): Promise<string>;
  /** An empty temp directory (cache or output dirs); removed by close(). */
  scratch(prefix: string): Promise<string>;
  /** Build options pushing to `<proxy>/<dest>` with the cache on (COPY layers too), reproducibly. */
  opts(ctx: string, dest: string, extra?: Partial<BuildOptions>): BuildOptions;
  /** Layer digests of a pushed manifest, read straight from the registry. */
  manifestLayers(repo: string, tag: string): Promise<string[]>;
  close(): Promise<void>;
}

export async function startCacheFixture(): Promise<CacheFixture> {
  const reg = await startRegistry({ kind: 'plain' });
  const busybox = await makeBusyboxImage();
  await skopeoPush(busybox, reg, 'base/busybox:1');
  const proxy = await startFaultProxy(reg);
  const dirs: string[] = [];
  const scratch = async (prefix: string) => {
    const dir = await mkdtemp(join(tmpdir(), prefix));
    dirs.push(dir);
    return dir;
  };
  return {
    reg,
    proxy,
    base: `${proxy.host}/base/busybox:1`,
    scratch,
    async context(dockerfile, files) {
      const dir = await scratch('gantry-cache-ctx-');
      await writeFile(join(dir, 'Dockerfile'), dockerfile);
      for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content);
      return dir;
    },
    opts: (ctx, dest, extra = {}) => ({
      context: ctx,
      destinations: [`${proxy.host}/${dest}`],
      reproducible: true,
      defaultOutputDir: false,
      cache: { enabled: true, copyLayers: true },
      ...extra,
    }),
    async manifestLayers(repo, tag) {
      const res = await fetch(`${reg.url}/v2/${repo}/manifests/${tag}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
      return ((await res.json()) as { layers: Array<{ digest: string }> }).layers.map((l) => l.digest);
    },
    async close() {
      await proxy.stop();
      await busybox.cleanup();
      await reg.stop();
      for (const d of dirs) await rm(d, { recursive: true, force: true });
    },
  };
}

/** Writes `files` (paths relative to `dir`, `/`-separated) into `dir`, creating parent directories. */
export async function writeTree(dir: string, files: Record<string, string>): Promise<void> {
  for (const [name, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, name)), { recursive: true });
    await writeFile(join(dir, name), content);
  }
}
