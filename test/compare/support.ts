/**
 * Shared machinery of the comparison tests: write a build context, build it with gantry and with
 * buildah from the same Dockerfile, and read both results back as merged file trees.
 *
 * Base images reach the two builders differently but identically in content: the Dockerfiles say
 * `FROM ${BASE}`; gantry gets `BASE=oci:<cached layout>:<tag>` (its own OCI-layout transport),
 * buildah gets `BASE=<name>` and the same layout copied into its throw-away storage under that name.
 */
import { chmod, link, mkdir, symlink, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { build } from '../../src/build/index.js';
import type { BuildOptions, BuildResult } from '../../src/build/index.js';
import type { BaseImage } from '../../src/testing/bases.js';
import { buildahBuild } from '../../src/testing/buildah.js';
import { tempDir } from '../../src/testing/tmp.js';
import { imageTree, type TreeEntry } from '../../src/testing/tree.js';

/** Fixed mtime for everything written into a context, so nothing depends on when the test ran. */
export const CONTEXT_MTIME = 1_600_000_000;

export type FileSpec =
  | string
  | Buffer
  | { content: string | Buffer; mode?: number }
  | { symlink: string }
  | { dir: true; mode?: number }
  /** A second name for an earlier file of the context (path relative to the root). */
  | { hardlink: string };

/**
 * Writes `files` under `root`. Every mode is set explicitly, never left to the umask, because
 * both builders copy modes into the image; parent directories no entry names are 0755. All
 * mtimes are CONTEXT_MTIME (symlinks keep theirs: nothing compares them).
 */
export async function writeContext(root: string, files: Record<string, FileSpec>): Promise<void> {
  const dirModes = new Map<string, number>();
  const ensureDir = async (dir: string) => {
    if (dir === root || dirModes.has(dir)) return;
    await ensureDir(dirname(dir));
    await mkdir(dir).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e;
    });
    dirModes.set(dir, 0o755);
  };
  for (const [rel, spec] of Object.entries(files)) {
    const p = join(root, rel);
    await ensureDir(dirname(p));
    if (typeof spec === 'string' || Buffer.isBuffer(spec)) {
      await writeFile(p, spec);
      await chmod(p, 0o644);
    } else if ('symlink' in spec) {
      await symlink(spec.symlink, p);
    } else if ('hardlink' in spec) {
      await link(join(root, spec.hardlink), p);
    } else if ('dir' in spec) {
      await ensureDir(p);
      dirModes.set(p, spec.mode ?? 0o755);
    } else {
      await writeFile(p, spec.content);
      await chmod(p, spec.mode ?? 0o644);
    }
    if (typeof spec === 'string' || Buffer.isBuffer(spec) || 'content' in spec) await utimes(p, CONTEXT_MTIME, CONTEXT_MTIME);
  }
  // Directories last: writing inside one changes its mtime.
  for (const [dir, mode] of dirModes) {
    await chmod(dir, mode);
    await utimes(dir, CONTEXT_MTIME, CONTEXT_MTIME);
  }
  await utimes(root, CONTEXT_MTIME, CONTEXT_MTIME);
}

export interface ComparedBuild {
  gantry: TreeEntry[];
  buildah: TreeEntry[];
  gantryLayout: string;
  buildahLayout: string;
  result: BuildResult;
  buildahLog: string;
}

export interface CompareInput {
  contextDir: string;
  /** Dockerfile path; default `<contextDir>/Dockerfile`. */
  dockerfile?: string;
  /** Where both layouts are written (a test's temp dir, removed by the test). */
  outDir: string;
  /**
   * The base image: `name` is what buildah's side gets as `BASE` (the image is copied into its
   * storage under that name), `gantryRef` what gantry gets (default `image.ref`, the OCI layout).
   */
  base: { name: string; image: BaseImage; gantryRef?: string };
  buildArgs?: Record<string, string>;
  target?: string;
  gantry?: Partial<BuildOptions>;
}

/**
 * gantry's side alone: builds into `<outDir>/<name>` (unless `gantry` options redirect the output)
 * and returns the layout and the result.
 */
export async function gantryBuild(input: CompareInput, name = 'gantry'): Promise<{ layout: string; result: BuildResult }> {
  const layout = join(input.outDir, name);
  const result = await build({
    context: input.contextDir,
    dockerfile: input.dockerfile ?? join(input.contextDir, 'Dockerfile'),
    buildArgs: { ...(input.buildArgs ?? {}), BASE: input.base.gantryRef ?? input.base.image.ref },
    ...(input.target !== undefined ? { target: input.target } : {}),
    ociLayoutPath: layout,
    defaultOutputDir: false,
    workDir: input.outDir,
    env: {},
    ...(input.gantry ?? {}),
  });
  return { layout, result };
}

/** Builds `input` with gantry and with buildah (one after the other: 2 shared cores) and reads both trees. */
export async function buildBoth(input: CompareInput): Promise<ComparedBuild> {
  const g = await gantryBuild(input);
  const b = await buildahBuild({
    contextDir: input.contextDir,
    dockerfile: input.dockerfile ?? join(input.contextDir, 'Dockerfile'),
    baseImages: { [input.base.name]: input.base.image.ref },
    buildArgs: { ...(input.buildArgs ?? {}), BASE: input.base.name },
    ...(input.target !== undefined ? { target: input.target } : {}),
    outDir: join(input.outDir, 'buildah'),
  });
  return {
    gantry: await imageTree(g.layout),
    buildah: await imageTree(b.ociDir, b.tag),
    gantryLayout: g.layout,
    buildahLayout: b.ociDir,
    result: g.result,
    buildahLog: b.log,
  };
}

/** A fresh temp dir with `ctx/` inside, for one comparison. */
export async function comparisonDir(prefix: string): Promise<{ root: string; ctx: string; cleanup(): Promise<void> }> {
  const tmp = await tempDir(prefix);
  const ctx = join(tmp.path, 'ctx');
  await mkdir(ctx);
  return { root: tmp.path, ctx, cleanup: tmp.cleanup };
}

/** Entries of `tree` at or under `dir`. */
export function subtree(tree: readonly TreeEntry[], dir: string): TreeEntry[] {
  return tree.filter((e) => e.path === dir || e.path.startsWith(`${dir}/`));
}
