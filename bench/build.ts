/**
 * gantry vs buildah building the same Dockerfile (`COPY . /app/` of a generated 2,000-file,
 * node-style context on the busybox base) from an OCI-layout base into an OCI layout, in the same
 * invocation so the ratio compares like with like. Both are whole processes, timed end to end:
 *   gantry:  `node bin/gantry.js executor --no-push --oci-layout-path=…` (FROM oci:<layout>)
 *   buildah: src/testing/buildah.ts — fresh vfs storage, base copied in with skopeo, `buildah bud
 *            --isolation=chroot --layers=false`, `buildah push oci:…`, storage removed
 * Rounds alternate which tool goes first, so neither always gets the warmer page cache.
 *   node dist/bench/build.js [--rounds=3] [--files=2000]
 */
import { spawn } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { busyboxBase } from '../src/testing/bases.js';
import { buildahBuild, buildahVersion } from '../src/testing/buildah.js';
import { repoRoot } from '../src/testing/paths.js';
import { tempDir } from '../src/testing/tmp.js';

function arg(name: string, def: number): number {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? Number(a.split('=')[1]) : def;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function timeIt(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

function runChecked(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err.slice(-4000)}`))));
  });
}

/** A node-style tree: `files` files of 200 B to ~8 KB across src/, node_modules/ and test/ directories. */
async function writeBenchContext(dir: string, files: number): Promise<number> {
  let bytes = 0;
  const put = async (rel: string, i: number) => {
    const p = join(dir, rel);
    await mkdir(dirname(p), { recursive: true });
    const body = `// ${rel}\n${'x'.repeat(200 + ((i * 7919) % 8000))}\n`;
    bytes += body.length;
    await writeFile(p, body);
  };
  await writeFile(join(dir, 'Dockerfile'), 'ARG BASE\nFROM ${BASE}\nWORKDIR /app\nCOPY . /app/\nCMD ["sh"]\n');
  for (let i = 0; i < files; i++) {
    const pkg = Math.floor(i / 10);
    const kind = i % 10;
    const rel =
      pkg % 4 === 0
        ? `src/mod${pkg}/${kind < 8 ? `lib/f${kind}.js` : `test/t${kind}.test.js`}`
        : `node_modules/pkg${pkg}/${kind === 0 ? 'package.json' : kind === 1 ? 'README.md' : `lib/deep/f${kind}.js`}`;
    await put(rel, i);
  }
  return bytes;
}

export async function benchBuild(): Promise<{ gantry: number; buildah?: number; ratio?: number }> {
  const rounds = arg('rounds', 3);
  const files = arg('files', 2000);
  const tmp = await tempDir('bench-build');
  try {
    const base = await busyboxBase();
    const ctx = join(tmp.path, 'ctx');
    await mkdir(ctx);
    const bytes = await writeBenchContext(ctx, files);
    const hasBuildah = await buildahVersion().then(
      (v) => v,
      () => undefined,
    );
    const gantryCli = join(repoRoot, 'bin', 'gantry.js');
    const g: number[] = [];
    const b: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const order = i % 2 === 0 ? ['gantry', 'buildah'] : ['buildah', 'gantry'];
      for (const tool of order) {
        const out = join(tmp.path, `${tool}-${i}`);
        if (tool === 'gantry') {
          g.push(
            await timeIt(() =>
              runChecked('node', [gantryCli, 'executor', `--context=${ctx}`, `--dockerfile=${join(ctx, 'Dockerfile')}`, `--build-arg=BASE=${base.ref}`, '--no-push', `--oci-layout-path=${out}`]),
            ),
          );
        } else if (hasBuildah) {
          b.push(await timeIt(() => buildahBuild({ contextDir: ctx, baseImages: { busybox: base.ref }, buildArgs: { BASE: 'busybox' }, outDir: out })));
        }
        await rm(out, { recursive: true, force: true });
      }
    }
    const fmt = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(', ');
    console.log(`build: COPY of ${files} files (${(bytes / 1e6).toFixed(1)} MB) onto busybox, OCI layout -> OCI layout, median of ${rounds}:`);
    console.log(`  gantry executor  ${median(g).toFixed(2)} s   (${fmt(g)})`);
    if (!hasBuildah) {
      console.log('  buildah          not installed: no ratio (apt-get install buildah)');
      return { gantry: median(g) };
    }
    const res = { gantry: median(g), buildah: median(b), ratio: median(g) / median(b) };
    console.log(`  buildah bud      ${res.buildah.toFixed(2)} s   (${fmt(b)})   ${hasBuildah}, vfs storage, chroot isolation`);
    console.log(`  ratio gantry/buildah = ${res.ratio.toFixed(2)} (goal <= 1.0)`);
    return res;
  } finally {
    await tmp.cleanup();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  benchBuild().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
}
