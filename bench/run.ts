/**
 * RUN: gantry vs buildah building the same ten-RUN Dockerfile (each RUN creates, modifies, renames
 * or deletes a few files; no network) on the Debian minbase base, in the same invocation so the
 * ratio compares like with like; then the same Dockerfile on the busybox base, to show that
 * gantry's per-RUN snapshot (overlay upperdir diff + layer write) does not grow with image size.
 *   gantry:  `node bin/gantry.js build --sandbox=ns --output type=oci,dest=… CTX` (FROM oci:<layout>)
 *   buildah: src/testing/buildah.ts (`buildah bud --isolation=chroot`, vfs storage, push to OCI)
 * Both are whole processes timed end to end; rounds alternate which tool goes first. The snapshot
 * times come from gantry's own debug log (`snapshotMs`, one line per RUN, logged by
 * src/build/run.ts), so they are measured inside the real build, not re-enacted here.
 *   node dist/bench/run.js [--rounds=3]
 */
import { spawn } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { busyboxBase, debianBase, type BaseImage } from '../src/testing/bases.js';
import { buildahBuild, buildahVersion } from '../src/testing/buildah.js';
import { repoRoot } from '../src/testing/paths.js';
import { tempDir } from '../src/testing/tmp.js';

function arg(name: string, def: number): number {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? Number(a.split('=')[1]) : def;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * Ten RUNs covering what a snapshot must capture: new files and directories, an edited file
 * (copy-up), deletions (whiteouts), a replaced directory (opaque), symlink and hard link, a rename,
 * a mode change and one 1 MiB file. Every command exists in both busybox and Debian minbase.
 */
const RUNS = [
  'mkdir -p /opt/x && seq 1 200 > /opt/x/n1',
  "echo 'bench:x:1234:1234::/home/bench:/bin/sh' >> /etc/passwd && sed -i 's/^root:x:0:0:root:/root:x:0:0:admin:/' /etc/passwd",
  'rm -rf /usr/share/doc /usr/share/man /usr/share/info && mkdir -p /usr/share/doc && echo gone > /usr/share/doc/README',
  'ln -s /opt/x/n1 /opt/x/link && ln /opt/x/n1 /opt/x/hard',
  'mkdir -p /var/cache/app && for i in $(seq 1 50); do echo $i > /var/cache/app/f$i; done',
  'rm -f /var/cache/app/f1* && chmod 600 /var/cache/app/f2 && mv /var/cache/app/f3 /var/cache/app/three',
  'cp /etc/passwd /etc/passwd.bak && sed -i "s/bench/bench2/" /etc/passwd && touch /etc/bench.stamp',
  'rm -rf /opt/x && mkdir /opt/x && echo new > /opt/x/new',
  'dd if=/dev/zero of=/opt/big bs=1024 count=1024 2>/dev/null',
  'rm -f /opt/big /etc/passwd.bak && mkdir -p /home/bench && echo hi > /home/bench/.profile',
];

const DOCKERFILE = 'ARG BASE\nFROM ${BASE}\n' + RUNS.map((r) => `RUN ${r}\n`).join('');

interface GantryRun {
  seconds: number;
  /** snapshotMs of each RUN, in Dockerfile order. */
  snapshots: number[];
}

/** Runs gantry, timing the whole process and collecting the per-RUN snapshot times it logs. */
function runGantry(args: string[], cacheHome: string): Promise<GantryRun> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    // A fresh cache home per run: no layer unpacked by an earlier run is reused (buildah starts
    // from fresh storage each round too).
    const child = spawn('node', args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, XDG_CACHE_HOME: cacheHome } });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      if (code !== 0) return reject(new Error(`node ${args.join(' ')} exited ${code}: ${err.slice(-4000)}`));
      const snapshots: number[] = [];
      for (const line of err.split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          const rec = JSON.parse(line) as { snapshotMs?: unknown };
          if (typeof rec.snapshotMs === 'number') snapshots.push(rec.snapshotMs);
        } catch {
          // a RUN's own output line that merely starts with `{`
        }
      }
      if (snapshots.length !== RUNS.length) {
        return reject(new Error(`expected ${RUNS.length} snapshot log lines from gantry, got ${snapshots.length} (is the snapshotMs debug log in src/build/run.ts?)`));
      }
      resolve({ seconds, snapshots });
    });
  });
}

function gantryArgs(ctx: string, base: BaseImage, out: string): string[] {
  return [
    join(repoRoot, 'bin', 'gantry.js'),
    'build',
    '--sandbox=ns',
    '--verbosity=debug',
    '--log-format=json',
    `--build-arg=BASE=${base.ref}`,
    '--output',
    `type=oci,dest=${out}`,
    ctx,
  ];
}

async function timeIt(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

export interface RunBenchResult {
  gantry: number;
  buildah?: number;
  ratio?: number;
  snapshotMedianMs: { debian: number; busybox: number };
  snapshotMaxMs: { debian: number; busybox: number };
}

export async function benchRun(): Promise<RunBenchResult> {
  const rounds = arg('rounds', 3);
  const tmp = await tempDir('bench-run');
  try {
    const debian = await debianBase();
    const busybox = await busyboxBase();
    const ctx = join(tmp.path, 'ctx');
    await mkdir(ctx);
    await writeFile(join(ctx, 'Dockerfile'), DOCKERFILE);
    const hasBuildah = await buildahVersion().then(
      (v) => v,
      () => undefined,
    );
    const g: number[] = [];
    const b: number[] = [];
    const snapDebian: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const order = i % 2 === 0 ? ['gantry', 'buildah'] : ['buildah', 'gantry'];
      for (const tool of order) {
        const out = join(tmp.path, `${tool}-${i}`);
        if (tool === 'gantry') {
          const r = await runGantry(gantryArgs(ctx, debian, out), join(tmp.path, `xdg-debian-${i}`));
          g.push(r.seconds);
          snapDebian.push(...r.snapshots);
        } else if (hasBuildah) {
          // buildah resolves the FROM value `debian:bookworm` to the base copied into its storage.
          b.push(await timeIt(() => buildahBuild({ contextDir: ctx, baseImages: { 'debian:bookworm': debian.ref }, buildArgs: { BASE: 'debian:bookworm' }, outDir: out })));
        }
        await rm(out, { recursive: true, force: true });
      }
    }
    const gBusybox: number[] = [];
    const snapBusybox: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const out = join(tmp.path, `gantry-busybox-${i}`);
      const r = await runGantry(gantryArgs(ctx, busybox, out), join(tmp.path, `xdg-busybox-${i}`));
      gBusybox.push(r.seconds);
      snapBusybox.push(...r.snapshots);
      await rm(out, { recursive: true, force: true });
    }

    const fmt = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(', ');
    const snap = (xs: number[]) => `median ${median(xs).toFixed(1)} ms, max ${Math.max(...xs).toFixed(1)} ms over ${xs.length} RUNs`;
    console.log(`run: ${RUNS.length} RUNs (create/edit/delete/link/rename, 1 MiB file, no network), OCI layout -> OCI layout, median of ${rounds}:`);
    console.log(`  debian bookworm minbase (${debian.ociDir})`);
    console.log(`    gantry build --sandbox=ns  ${median(g).toFixed(2)} s   (${fmt(g)})`);
    const res: RunBenchResult = {
      gantry: median(g),
      snapshotMedianMs: { debian: median(snapDebian), busybox: median(snapBusybox) },
      snapshotMaxMs: { debian: Math.max(...snapDebian), busybox: Math.max(...snapBusybox) },
    };
    if (hasBuildah) {
      res.buildah = median(b);
      res.ratio = median(g) / median(b);
      console.log(`    buildah bud                ${res.buildah.toFixed(2)} s   (${fmt(b)})   ${hasBuildah}, vfs storage, chroot isolation`);
      console.log(`    ratio gantry/buildah = ${res.ratio.toFixed(2)} (goal <= 1.0)`);
    } else {
      console.log('    buildah                    not installed: no ratio (apt-get install buildah)');
    }
    console.log(`  busybox`);
    console.log(`    gantry build --sandbox=ns  ${median(gBusybox).toFixed(2)} s   (${fmt(gBusybox)})`);
    console.log(`  per-RUN snapshot (upperdir diff + layer write), goal <= 20 ms whatever the image size:`);
    // Median of each RUN over the rounds, in Dockerfile order: shows which kind of change costs.
    const perRun = (xs: number[]) =>
      RUNS.map((_, k) => median(xs.filter((_, j) => j % RUNS.length === k)).toFixed(0)).join(' ');
    console.log(`    debian   ${snap(snapDebian)}   per RUN ms: ${perRun(snapDebian)}`);
    console.log(`    busybox  ${snap(snapBusybox)}   per RUN ms: ${perRun(snapBusybox)}`);
    return res;
  } finally {
    await tmp.cleanup();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  benchRun().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
}
