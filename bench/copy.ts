/**
 * gantry copy vs skopeo copy of a ~200 MB, 5-layer image between two local registries, run in
 * the same invocation so the ratio compares like with like. Each round copies into a fresh
 * registry with a fresh HOME, so neither tool can skip or cross-mount blobs (skopeo remembers
 * where blobs live in ~/.local/share/containers/cache and would mount them otherwise).
 *   node dist/bench/copy.js [--rounds=3] [--layer-mb=40] [--profile[=DIR]]
 * --profile runs gantry under `node --cpu-prof` (into DIR, default a temp dir that is kept) and
 * prints where its CPU time went; profiling slows gantry, so the ratio of such a run means little.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
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

function profileArg(): string | undefined | true {
  const a = process.argv.find((x) => x === '--profile' || x.startsWith('--profile='));
  if (!a) return undefined;
  return a === '--profile' ? true : a.slice('--profile='.length);
}

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
  samples: number[];
  timeDeltas: number[];
}

/** The functions that took the most CPU (self time) in a V8 CPU profile, and the idle share. */
export function summarizeProfile(p: CpuProfile, top = 15): string {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let total = 0;
  p.samples.forEach((id, i) => {
    const f = byId.get(id)!.callFrame;
    const where = f.url ? ` ${f.url.replace(/^.*\/(node_modules|dist)\//, '$1/')}:${f.lineNumber + 1}` : '';
    const key = `${f.functionName || '(anonymous)'}${where}`;
    const dt = p.timeDeltas[i] ?? 0;
    total += dt;
    self.set(key, (self.get(key) ?? 0) + dt);
  });
  const rows = [...self].sort((a, b) => b[1] - a[1]).slice(0, top);
  return [`  ${(total / 1000).toFixed(0)} ms profiled; top self time:`, ...rows.map(([k, us]) => `  ${(us / 1000).toFixed(1).padStart(8)} ms  ${k}`)].join('\n');
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function benchCopy(): Promise<{ gantry: number; skopeo: number; ratio: number }> {
  const rounds = arg('rounds', 3);
  const layerMb = arg('layer-mb', 40);
  const profile = profileArg();
  const profileDir = profile === true ? await mkdtemp(join(tmpdir(), 'gantry-copy-profile-')) : profile;
  const nodeFlags = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
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
          if (tool === 'gantry') g.push(await timed('node', [...nodeFlags, ...gantry(b.host), `${a.host}/bench/src:v1`, `${b.host}/bench/img:v1`], env));
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
    if (profileDir) {
      const files = (await readdir(profileDir)).filter((f) => f.endsWith('.cpuprofile')).sort();
      console.log(`gantry CPU profiles (under --cpu-prof, slower than unprofiled runs) in ${profileDir}`);
      const last = files[files.length - 1];
      if (last) console.log(summarizeProfile(JSON.parse(await readFile(join(profileDir, last), 'utf8')) as CpuProfile));
    }
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
