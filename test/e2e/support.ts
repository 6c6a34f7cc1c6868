/**
 * Helpers for end-to-end build tests: build contexts on disk, builds into OCI layouts, and
 * reading results back with the tools users have (skopeo for config/manifest, umoci for files).
 */
import { lstat, mkdir, readdir, readFile, readlink, symlink, utimes, writeFile, chmod } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { build } from '../../src/build/index.js';
import type { BuildOptions, BuildResult } from '../../src/build/index.js';
import type { ImageConfig, ImageManifest } from '../../src/oci/types.js';
import { run } from '../../src/testing/exec.js';
import { tempDir, type TempDir } from '../../src/testing/tmp.js';

export type FileSpec = string | { content: string; mode?: number; mtime?: number } | { symlink: string } | { dir: true; mode?: number };

/** Fixed mtime for context files, so trees compare exactly. */
export const CONTEXT_MTIME = 1_600_000_000;

export async function writeTree(root: string, files: Record<string, FileSpec>): Promise<void> {
  for (const [rel, spec] of Object.entries(files)) {
    const p = join(root, rel);
    await mkdir(dirname(p), { recursive: true });
    if (typeof spec === 'string') {
      await writeFile(p, spec);
      await utimes(p, CONTEXT_MTIME, CONTEXT_MTIME);
    } else if ('symlink' in spec) await symlink(spec.symlink, p);
    else if ('dir' in spec) {
      await mkdir(p, { recursive: true });
      if (spec.mode !== undefined) await chmod(p, spec.mode);
    } else {
      await writeFile(p, spec.content);
      if (spec.mode !== undefined) await chmod(p, spec.mode);
      await utimes(p, spec.mtime ?? CONTEXT_MTIME, spec.mtime ?? CONTEXT_MTIME);
    }
  }
}

export interface LayoutBuild {
  result: BuildResult;
  layout: string;
  tmp: TempDir;
}

/** Builds `dockerfile` with a context of `files` into an OCI layout (tag `latest`). */
export async function buildToLayout(
  dockerfile: string,
  files: Record<string, FileSpec>,
  opts: Partial<BuildOptions> = {},
  setup?: (contextDir: string) => Promise<void>,
): Promise<LayoutBuild> {
  const tmp = await tempDir('e2e-build');
  const ctx = join(tmp.path, 'ctx');
  const layout = join(tmp.path, 'layout');
  try {
    await mkdir(ctx);
    await writeTree(ctx, { Dockerfile: dockerfile, ...files });
    await setup?.(ctx);
    const result = await build({ context: ctx, ociLayoutPath: layout, workDir: tmp.path, env: {}, ...opts });
    return { result, layout, tmp };
  } catch (err) {
    await tmp.cleanup();
    throw err;
  }
}

export async function skopeoConfig(ref: string, extra: string[] = []): Promise<ImageConfig> {
  const r = await run('skopeo', ['inspect', ...extra, '--raw', '--config', ref], { check: true });
  return JSON.parse(r.stdout) as ImageConfig;
}

export async function skopeoManifest(ref: string, extra: string[] = []): Promise<ImageManifest> {
  const r = await run('skopeo', ['inspect', ...extra, '--raw', ref], { check: true });
  return JSON.parse(r.stdout) as ImageManifest;
}

export interface TreeNode {
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  uid: number;
  gid: number;
  content?: string;
  target?: string;
  mtime?: number;
}

/** Unpacks an OCI layout image with umoci and lists its root filesystem. */
export async function unpackedTree(layout: string, tag = 'latest'): Promise<Record<string, TreeNode>> {
  const bundle = join(dirname(layout), `bundle-${Math.random().toString(36).slice(2)}`);
  await run('umoci', ['unpack', '--image', `${layout}:${tag}`, bundle], { check: true });
  const out: Record<string, TreeNode> = {};
  const walk = async (dir: string, rel: string) => {
    for (const name of (await readdir(dir)).sort()) {
      const p = join(dir, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = await lstat(p);
      const node: TreeNode = { type: st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other', mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: Math.floor(st.mtimeMs / 1000) };
      if (st.isFile()) node.content = await readFile(p, 'utf8');
      if (st.isSymbolicLink()) node.target = await readlink(p);
      out[r] = node;
      if (st.isDirectory()) await walk(p, r);
    }
  };
  await walk(join(bundle, 'rootfs'), '');
  return out;
}

/** Just paths and types/contents, for table comparisons. */
export function shape(tree: Record<string, TreeNode>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [p, n] of Object.entries(tree)) out[p] = n.type === 'file' ? `file:${n.content}` : n.type === 'symlink' ? `link:${n.target}` : n.type;
  return out;
}
