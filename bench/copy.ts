/**
 * gantry copy vs skopeo copy of a ~200 MB, 5-layer image between two local registries, run in
 * the same invocation so the ratio compares like with like. Each round copies into a fresh
 * registry with a fresh HOME, so neither tool can skip or cross-mount blobs (skopeo remembers
 * where blobs live in ~/.local/share/containers/cache and would mount them otherwise).
 *   node dist/bench/copy.js [--rounds=3] [--layer-mb=40]
 */
import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { makeRandomImage, writeOciLayout } from '../src/testing/images.js';
import { repoRoot } from '../src/testing/paths.js';
import { startRegistry } from '../src/testing/registry.js';
import { tempDir } from '../src/testing/tmp.js';

function arg(name: string, def: number): number {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? Number(a.split('=')[1]) : def;
}

function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err}`));
      else resolve(Number(process.hrtime.bigint() - start) / 1e9);
    });
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function benchCopy(): Promise<{ gantry: number; skopeo: number; ratio: number }> {
  const rounds = arg('rounds', 3);
  const layerMb = arg('layer-mb', 40);
  const a = await startRegistry({ kind: 'plain' });
  const tmp = await tempDir('gantry-bench-copy');
  const img = await makeRandomImage({ layers: 5, layerBytes: layerMb * 1024 * 1024, seed: 1 });
  try {
    const envFor = async (name: string) => {
      const home = join(tmp.path, name);
      await mkdir(home, { recursive: true });
      return { PATH: process.env.PATH, HOME: home, XDG_RUNTIME_DIR: home, REGISTRY_AUTH_FILE: join(home, 'auth.json') };
    };
    const gantry = (b: string) => [join(repoRoot, 'bin', 'gantry.js'), 'copy', `--insecure-registry=${a.host}`, `--insecure-registry=${b}`];
    await writeOciLayout(img, join(tmp.path, 'src'), 'v1');
    await timed('node', [...gantry(a.host), `oci:${join(tmp.path, 'src')}:v1`, `${a.host}/bench/src:v1`], await envFor('seed'));
    const total = img.layers.reduce((n, l) => n + l.size, 0);
    const g: number[] = [];
    const s: number[] = [];
    for (let i = 0; i < rounds; i++) {
      for (const tool of i % 2 === 0 ? ['gantry', 'skopeo'] : ['skopeo', 'gantry']) {
        const b = await startRegistry({ kind: 'plain' });
        try {
          const env = await envFor(`${tool}${i}`);
          if (tool === 'gantry') g.push(await timed('node', [...gantry(b.host), `${a.host}/bench/src:v1`, `${b.host}/bench/img:v1`], env));
          else s.push(await timed('skopeo', ['copy', '--insecure-policy', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${a.host}/bench/src:v1`, `docker://${b.host}/bench/img:v1`], env));
        } finally {
          await b.stop();
        }
      }
    }
    const res = { gantry: median(g), skopeo: median(s), ratio: median(g) / median(s) };
    console.log(`copy ${(total / 1e6).toFixed(0)} MB in 5 layers, registry -> registry, median of ${rounds}:`);
    console.log(`  gantry copy  ${res.gantry.toFixed(2)} s   (${g.map((x) => x.toFixed(2)).join(', ')})`);
    console.log(`  skopeo copy  ${res.skopeo.toFixed(2)} s   (${s.map((x) => x.toFixed(2)).join(', ')})`);
    console.log(`  ratio gantry/skopeo = ${res.ratio.toFixed(2)} (goal <= 1.0)`);
    return res;
  } finally {
    await Promise.allSettled([a.stop(), img.cleanup(), tmp.cleanup()]);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  benchCopy().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
}
