/**
 * Memory bound (issue 6: peak RSS <= 200 MB while building and pushing a 1 GiB image). One whole
 * `gantry executor` process builds and pushes, to a local registry, an image of ~1 GiB of
 * incompressible data on the busybox base:
 *   COPY  a context generated at run time in a temp dir: a few 100 MiB files plus many 128 KiB
 *         ones (~600 MiB), so both the streamed and the read-whole paths of the layer writer run
 *   RUN   dd 400 MiB from /dev/urandom
 * with --cache=true --cache-copy-layers=true, so the layer cache pushes both layers too.
 * While it runs, the process tree is sampled every 20 ms: VmHWM of every process (the kernel's own
 * high-water mark, so a peak between two samples is not missed) and the sum of VmRSS over the tree.
 * The bound applies to the largest gantry (node) process; the run fails (exit 1) above it.
 *   node dist/bench/rss.js [--context-mib=600] [--run-mib=400] [--bound-mb=200]
 */
import { spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdir, open, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { busyboxBase, pushBase } from '../src/testing/bases.js';
import { repoRoot } from '../src/testing/paths.js';
import { startRegistry } from '../src/testing/registry.js';
import { tempDir } from '../src/testing/tmp.js';

const MiB = 1024 * 1024;

function arg(name: string, def: number): number {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? Number(a.split('=')[1]) : def;
}

/** Writes `bytes` of random data to `path` in 4 MiB pieces (random: gzip cannot shrink it). */
async function randomFile(path: string, bytes: number, buf: Buffer): Promise<void> {
  const fh = await open(path, 'w');
  try {
    for (let left = bytes; left > 0; ) {
      const n = Math.min(left, buf.length);
      randomFillSync(buf, 0, n);
      await fh.write(buf, 0, n);
      left -= n;
    }
  } finally {
    await fh.close();
  }
}

/** ~`mib` MiB of context: two thirds in 100 MiB files, the rest in 128 KiB files over 16 directories. */
async function generateContext(dir: string, mib: number): Promise<{ big: number; small: number }> {
  const buf = Buffer.allocUnsafe(4 * MiB);
  const big = Math.max(1, Math.round((mib * 2) / 3 / 100));
  for (let i = 0; i < big; i++) await randomFile(join(dir, `big-${i}.bin`), 100 * MiB, buf);
  const small = Math.max(0, Math.round(((mib - big * 100) * MiB) / (128 * 1024)));
  for (let i = 0; i < small; i++) {
    const sub = join(dir, 'small', `d${i % 16}`);
    if (i < 16) await mkdir(sub, { recursive: true });
    await randomFile(join(sub, `f${i}.bin`), 128 * 1024, buf);
  }
  return { big, small };
}

interface ProcPeak {
  pid: number;
  comm: string;
  hwmKiB: number;
}

/** Fields of /proc/<pid>/status in KiB, or undefined once the process is gone. */
async function statusKiB(pid: number): Promise<{ hwm: number; rss: number; name: string } | undefined> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined);
  if (!text) return undefined;
  const field = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0);
  return { hwm: field('VmHWM'), rss: field('VmRSS'), name: /^Name:\s+(.*)$/m.exec(text)?.[1] ?? '?' };
}

/** Pids of `root`'s descendants (one /proc scan). */
async function descendants(root: number): Promise<number[]> {
  const parent = new Map<number, number>();
  for (const e of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(e)) continue;
    const stat = await readFile(`/proc/${e}/stat`, 'utf8').catch(() => undefined);
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so split after the last ')'.
    const m = stat ? /\)\s+\S+\s+(\d+)/.exec(stat.slice(stat.lastIndexOf(')'))) : null;
    if (m) parent.set(Number(e), Number(m[1]));
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [pid, pp] of parent) if (pp === p) (out.push(pid), walk(pid));
  };
  walk(root);
  return out;
}

/** Samples a process tree until stop(): per-process peak VmHWM and the peak of the summed VmRSS. */
function sampleTree(root: number): { stop(): Promise<{ peaks: ProcPeak[]; treeRssKiB: number }> } {
  const peaks = new Map<number, ProcPeak>();
  let tree = [root];
  let treeRssKiB = 0;
  let running = true;
  let ticks = 0;
  const loop = (async () => {
    while (running) {
      // Children come and go (RUN commands, codecs): look for new ones every 5th sample.
      if (ticks++ % 5 === 0) tree = [root, ...(await descendants(root))];
      let sum = 0;
      for (const pid of tree) {
        const s = await statusKiB(pid);
        if (!s) continue;
        sum += s.rss;
        const p = peaks.get(pid);
        if (!p || s.hwm > p.hwmKiB) peaks.set(pid, { pid, comm: s.name, hwmKiB: s.hwm });
      }
      treeRssKiB = Math.max(treeRssKiB, sum);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { peaks: [...peaks.values()].sort((a, b) => b.hwmKiB - a.hwmKiB), treeRssKiB };
    },
  };
}

export interface RssResult {
  seconds: number;
  gantryPeakMB: number;
  treePeakMB: number;
  boundMB: number;
  ok: boolean;
}

export async function benchRss(): Promise<RssResult> {
  const contextMiB = arg('context-mib', 600);
  const runMiB = arg('run-mib', 400);
  const boundMB = arg('bound-mb', 200);
  const tmp = await tempDir('bench-rss');
  const reg = await startRegistry({ kind: 'plain' });
  try {
    const ctx = join(tmp.path, 'ctx');
    await mkdir(ctx);
    const { big, small } = await generateContext(ctx, contextMiB);
    await writeFile(join(ctx, 'Dockerfile'), `ARG BASE\nFROM \${BASE}\nCOPY . /data/\nRUN dd if=/dev/urandom of=/big.bin bs=1M count=${runMiB} 2>/dev/null\n`);
    const base = await pushBase(await busyboxBase(), reg, 'base/busybox:latest');
    const home = join(tmp.path, 'home');
    await mkdir(home);
    await mkdir(join(tmp.path, 'kaniko'));
    const args = [
      join(repoRoot, 'bin', 'gantry.js'),
      'executor',
      `--context=${ctx}`,
      `--dockerfile=${join(ctx, 'Dockerfile')}`,
      `--build-arg=BASE=${base}`,
      `--destination=${reg.host}/rss/image:latest`,
      '--cache=true',
      '--cache-copy-layers=true',
      `--cache-repo=${reg.host}/rss/cache`,
      `--kaniko-dir=${join(tmp.path, 'kaniko')}`,
    ];
    const start = process.hrtime.bigint();
    const child = spawn('node', args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, HOME: home, XDG_CACHE_HOME: join(home, '.cache'), TMPDIR: tmp.path } });
    const sampler = sampleTree(child.pid!);
    let err = '';
    child.stderr.on('data', (d) => (err = (err + d).slice(-8000)));
    if (process.env.BENCH_DEBUG) child.stderr.pipe(process.stderr, { end: false });
    const code = await new Promise<number | null>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (c) => resolve(c));
    });
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    const { peaks, treeRssKiB } = await sampler.stop();
    if (code !== 0) throw new Error(`gantry executor exited ${code}:\n${err}`);

    // The bound only means something if the whole image went out: read the pushed manifest back.
    const res0 = await fetch(`${reg.url}/v2/rss/image/manifests/latest`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    if (!res0.ok) throw new Error(`reading the pushed manifest: ${res0.status}`);
    const pushedBytes = ((await res0.json()) as { layers: Array<{ size: number }> }).layers.reduce((n, l) => n + l.size, 0);
    if (pushedBytes < (contextMiB + runMiB) * MiB * 0.95) throw new Error(`the pushed image holds ${pushedBytes} bytes of layers, expected ~${contextMiB + runMiB} MiB`);

    const mb = (kib: number) => (kib * 1024) / 1e6;
    const gantryPeak = Math.max(0, ...peaks.filter((p) => p.comm.startsWith('node') || p.pid === child.pid).map((p) => p.hwmKiB));
    const res: RssResult = { seconds, gantryPeakMB: mb(gantryPeak), treePeakMB: mb(treeRssKiB), boundMB, ok: mb(gantryPeak) <= boundMB };
    console.log(`rss: build + push of ~${contextMiB + runMiB} MiB incompressible (COPY ${big} x 100 MiB + ${small} x 128 KiB, RUN dd ${runMiB} MiB), --cache=true, one gantry executor process`);
    console.log(`  time ${seconds.toFixed(1)} s, ${(pushedBytes / MiB).toFixed(0)} MiB of layers pushed`);
    console.log(`  peak RSS (VmHWM) of gantry: ${res.gantryPeakMB.toFixed(0)} MB  bound ${boundMB} MB  ${res.ok ? 'ok' : '<- ABOVE THE BOUND'}`);
    console.log(`  peak summed VmRSS of the process tree: ${res.treePeakMB.toFixed(0)} MB`);
    for (const p of peaks.slice(0, 4)) console.log(`    pid ${p.pid} ${p.comm}: VmHWM ${mb(p.hwmKiB).toFixed(0)} MB`);
    return res;
  } finally {
    await reg.stop();
    await tmp.cleanup();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  benchRss().then(
    (r) => {
      if (!r.ok) process.exitCode = 1;
    },
    (err) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
