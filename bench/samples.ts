/**
 * The layer cache on the samples in bench/samples/: each is built and pushed to a fresh local
 * registry by whole `gantry executor --cache=true --cache-copy-layers=true` processes, three ways:
 *   cold       empty cache repository, fresh registry (base pushed into it first, untimed)
 *   no-change  the same build again: every step must come from the cache
 *   warm       after a one-line change to one copied source file
 * Timed builds talk to the registry directly; the no-change build is then repeated (untimed)
 * through a fault proxy (no rules) that counts requests: it must GET no layer blob at all. The
 * proxy lives in this process and would add its own latency to every timed request; it reaches the
 * same registry storage, so cache entries and blobs are the same whichever address a build uses. Where buildah is installed, `buildah bud` builds the same
 * sample cold in the same invocation (src/testing/buildah.ts: fresh vfs storage, base copied in,
 * --layers=false, pushed to an OCI layout), and the gantry/buildah ratio of the cold builds is
 * printed. buildah gets no warm numbers: it has no registry layer cache in this setup.
 *   node dist/bench/samples.js [--rounds=3] [--samples=busybox-copy,debian-apt] [--files=2000]
 */
import { spawn } from 'node:child_process';
import { appendFile, cp, mkdir, open, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { busyboxBase, debianBase, pushBase, type BaseImage } from '../src/testing/bases.js';
import { buildahBuild, buildahVersion } from '../src/testing/buildah.js';
import { startFaultProxy, type FaultProxy } from '../src/testing/fault-proxy.js';
import { repoRoot } from '../src/testing/paths.js';
import { startRegistry } from '../src/testing/registry.js';
import { tempDir } from '../src/testing/tmp.js';

interface Sample {
  name: string;
  base: 'busybox' | 'debian';
  /** The copied source file the warm build changes by one line. */
  change: string;
  /** Fills the temp copy at run time (big contexts are not kept in the repo). */
  generate?: (dir: string, files: number) => Promise<void>;
}

const SAMPLES: Sample[] = [
  { name: 'busybox-copy', base: 'busybox', change: 'src/settings.env' },
  { name: 'debian-apt', base: 'debian', change: 'app.sh' },
  { name: 'multistage', base: 'busybox', change: 'input.txt' },
  { name: 'node-context', base: 'busybox', change: 'src/index.js', generate: generateNodeTree },
];

function arg(name: string): string | undefined {
  return process.argv.find((x) => x.startsWith(`--${name}=`))?.split('=')[1];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * ~`files` files in a node-style tree, 1 in 20 of them matched by the sample's .dockerignore
 * (logs, node_modules/.cache), so the ignore rules do work on every build.
 */
async function generateNodeTree(dir: string, files: number): Promise<void> {
  for (let i = 0; i < files; i++) {
    const pkg = Math.floor(i / 10);
    const kind = i % 10;
    let rel: string;
    if (i % 20 === 19) rel = i % 40 === 39 ? `logs/run${i}.log` : `node_modules/.cache/c${i}.bin`;
    else if (pkg % 4 === 0) rel = `src/mod${pkg}/${kind < 8 ? `lib/f${kind}.js` : `test/t${kind}.test.js`}`;
    else rel = `node_modules/pkg${pkg}/${kind === 0 ? 'package.json' : kind === 1 ? 'README.md' : `lib/deep/f${kind}.js`}`;
    const p = join(dir, rel);
    await mkdir(dirname(p), { recursive: true });
    await writeFile(p, `// ${rel}\n${'x'.repeat(200 + ((i * 7919) % 8000))}\n`);
  }
}

async function timedProcess(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const start = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
    let err = '';
    child.stderr.on('data', (d) => (err = (err + d).slice(-8000)));
    if (process.env.BENCH_DEBUG) child.stderr.pipe(process.stderr, { end: false });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}:\n${err}`))));
  });
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** Whether a stored registry blob is a layer (gzip/zstd/tar), not a config or manifest (JSON). */
async function isLayerBlob(dataDir: string, digest: string): Promise<boolean> {
  const hex = digest.replace(/^sha256:/, '');
  const fh = await open(join(dataDir, 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data')).catch(() => undefined);
  if (!fh) return true; // unknown to the registry: count it, a miss must not hide a GET
  try {
    const buf = Buffer.alloc(1);
    await fh.read(buf, 0, 1, 0);
    return buf[0] !== 0x7b; // '{'
  } finally {
    await fh.close();
  }
}

async function layerBlobGets(proxy: FaultProxy, dataDir: string, from: number): Promise<number> {
  let n = 0;
  for (const h of proxy.hits.slice(from)) {
    const m = /\/blobs\/(sha256:[a-f0-9]{64})/.exec(h.path);
    if (h.method === 'GET' && m && (await isLayerBlob(dataDir, m[1]!))) {
      n++;
      if (process.env.BENCH_DEBUG) console.error(`layer GET: ${h.path}`);
    }
  }
  return n;
}

interface SampleResult {
  name: string;
  cold: number[];
  noChange: number[];
  warm: number[];
  noChangeLayerGets: number[];
  buildah: number[];
}

async function benchSample(sample: Sample, base: BaseImage, rounds: number, files: number, withBuildah: boolean, work: string): Promise<SampleResult> {
  const res: SampleResult = { name: sample.name, cold: [], noChange: [], warm: [], noChangeLayerGets: [], buildah: [] };
  const gantryCli = join(repoRoot, 'bin', 'gantry.js');
  for (let i = 0; i < rounds; i++) {
    const ctx = join(work, `${sample.name}-${i}`);
    await cp(join(repoRoot, 'bench', 'samples', sample.name), ctx, { recursive: true });
    if (sample.generate) await sample.generate(ctx, files);
    const home = join(work, `home-${sample.name}-${i}`);
    await mkdir(home, { recursive: true });
    // Own HOME: the RUN cache and anything else gantry keeps locally start empty every round.
    const env = { ...process.env, HOME: home, XDG_CACHE_HOME: join(home, '.cache') };

    const reg = await startRegistry({ kind: 'plain' });
    const proxy = await startFaultProxy(reg);
    try {
      await pushBase(base, reg, `base/${sample.base}:latest`);
      const build = (tag: string, host: string = reg.host) =>
        timedProcess(
          'node',
          [
            gantryCli,
            'executor',
            `--context=${ctx}`,
            `--dockerfile=${join(ctx, 'Dockerfile')}`,
            `--build-arg=BASE=${host}/base/${sample.base}:latest`,
            `--destination=${host}/bench/${sample.name}:${tag}`,
            '--cache=true',
            `--cache-repo=${host}/bench/cache`,
            '--cache-copy-layers=true',
          ],
          env,
        );
      res.cold.push(await build('cold'));
      res.noChange.push(await build('nochange'));
      // Once more through the counting proxy (untimed): no layer blob may be fetched.
      const before = proxy.hits.length;
      await build('counted', proxy.host);
      res.noChangeLayerGets.push(await layerBlobGets(proxy, reg.dataDir, before));
      await appendFile(join(ctx, sample.change), sample.change.endsWith('.sh') || sample.change.endsWith('.env') || sample.change.endsWith('.txt') ? `# bench change ${i}\n` : `// bench change ${i}\n`);
      res.warm.push(await build('warm'));
    } finally {
      await proxy.stop();
      await reg.stop();
    }

    if (withBuildah) {
      const fresh = join(work, `${sample.name}-${i}-buildah`);
      await cp(join(repoRoot, 'bench', 'samples', sample.name), fresh, { recursive: true });
      if (sample.generate) await sample.generate(fresh, files);
      const start = process.hrtime.bigint();
      const out = await buildahBuild({ contextDir: fresh, baseImages: { [sample.base]: base.ref }, buildArgs: { BASE: sample.base }, timeoutMs: 15 * 60_000 });
      res.buildah.push(Number(process.hrtime.bigint() - start) / 1e9);
      await out.cleanup();
    }
  }
  return res;
}

export async function benchSamples(): Promise<SampleResult[]> {
  const rounds = Number(arg('rounds') ?? 3);
  const files = Number(arg('files') ?? 2000);
  const only = arg('samples')?.split(',');
  const chosen = SAMPLES.filter((s) => !only || only.includes(s.name));
  const buildah = await buildahVersion().then(
    (v) => v,
    () => undefined,
  );
  const tmp = await tempDir('bench-samples');
  const results: SampleResult[] = [];
  try {
    const bases: Partial<Record<Sample['base'], BaseImage>> = {};
    for (const s of chosen) bases[s.base] ??= s.base === 'busybox' ? await busyboxBase() : await debianBase();
    for (const s of chosen) results.push(await benchSample(s, bases[s.base]!, rounds, files, buildah !== undefined, tmp.path));
  } finally {
    await tmp.cleanup();
  }

  const f = (xs: number[]) => (xs.length ? median(xs).toFixed(2).padStart(7) : '      -');
  console.log(`samples: gantry executor --cache=true --cache-copy-layers=true, push to a local registry; median of ${rounds} whole-process runs, seconds`);
  console.log(`  ${'sample'.padEnd(14)}${'cold'.padStart(7)}${'no-chg'.padStart(8)}${'warm'.padStart(8)}${'layerGETs'.padStart(11)}${'buildah'.padStart(9)}${'ratio'.padStart(7)}`);
  for (const r of results) {
    const gets = Math.max(...r.noChangeLayerGets);
    const ratio = r.buildah.length ? (median(r.cold) / median(r.buildah)).toFixed(2) : '-';
    console.log(`  ${r.name.padEnd(14)}${f(r.cold)} ${f(r.noChange)} ${f(r.warm)}${String(gets).padStart(11)}  ${f(r.buildah)}${ratio.padStart(7)}${gets ? '   <- no-change rebuild fetched layers!' : ''}`);
  }
  console.log(buildah ? `  buildah: ${buildah}, bud --layers=false, vfs storage, chroot isolation, cold only; ratio = gantry cold / buildah cold` : '  buildah not installed: no ratio');
  console.log('  layerGETs: layer blob GETs of the no-change rebuild (max over rounds; must be 0)');
  return results;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  benchSamples().then(
    (results) => {
      // Standalone, a no-change rebuild that fetched layers fails the run (CI can gate on it).
      if (results.some((r) => r.noChangeLayerGets.some((n) => n > 0))) process.exitCode = 1;
    },
    (err) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
