/**
 * Test-only program (never imported by shipped code): rootless-sandbox.test.ts runs it as an
 * unprivileged user. It enters the user namespace the way the CLI does, runs each case of the
 * job file (argv[2]) in a fresh rootless sandbox, diffs the upperdir inside the namespace and
 * prints the results as one JSON document on stdout. Log lines go to stderr as `LOG level msg`.
 */
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { diffUpperDir } from '../fs/diff/index.js';
import type { Logger } from '../util/logger.js';
import { createSandbox, detectSandbox } from './detect.js';
import { enterUserNamespace, readIdMap, userNamespaceState } from './rootless-userns.js';
import type { RunSpec } from './types.js';

export interface FixtureCase {
  name: string;
  spec: Omit<RunSpec, 'stdout' | 'stderr' | 'signal'>;
  /** Lower layers: the job's rootfs, or the upper dir of an earlier case by name, topmost first. */
  lowers?: string[];
  resolvConf?: string;
  /** Run `true` this many times and report the durations instead of a diff. */
  bench?: number;
}

export interface FixtureJob {
  dir: string;
  rootfs: string;
  cases: FixtureCase[];
}

export interface FixtureEntry {
  name: string;
  type: string;
  uid: number;
  gid: number;
  mode: number;
  xattrs: string[];
  bytes: number;
}

export interface FixtureResult {
  name: string;
  exitCode?: number;
  stdout?: string;
  tail?: string[];
  entries?: FixtureEntry[];
  error?: { code?: string; message: string };
  durationsMs?: number[];
}

const logger: Logger = { log: (level, msg) => process.stderr.write(`LOG ${level} ${msg.replace(/\n/g, ' ')}\n`) };

const code = await enterUserNamespace({ logger });
if (code !== undefined) process.exit(code);

const job = JSON.parse(readFileSync(process.argv[2], 'utf8')) as FixtureJob;
const uppers = new Map<string, string>();
const results: FixtureResult[] = [];
const detection = await detectSandbox({ stateDir: job.dir });
for (const c of job.cases) {
  const dir = join(job.dir, `case-${results.length}`);
  await mkdir(dir);
  const upperDir = join(dir, 'upper');
  uppers.set(c.name, upperDir);
  const lowerDirs = (c.lowers ?? ['rootfs']).map((l) => (l === 'rootfs' ? job.rootfs : uppers.get(l)!));
  const result: FixtureResult = { name: c.name };
  results.push(result);
  try {
    const sandbox = await createSandbox('rootless', { lowerDirs, upperDir, workDir: join(dir, 'work'), mergedDir: join(dir, 'merged'), stateDir: dir, logger, resolvConf: c.resolvConf });
    try {
      if (c.bench) {
        result.durationsMs = [];
        for (let i = 0; i < c.bench; i++) {
          const t0 = process.hrtime.bigint();
          await sandbox.run({ ...c.spec, argv: ['/bin/true'] });
          result.durationsMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
        }
        continue;
      }
      let stdout = '';
      const r = await sandbox.run({ ...c.spec, stdout: (b) => (stdout += b.toString()) });
      Object.assign(result, { exitCode: r.exitCode, stdout, tail: r.tail });
    } finally {
      await sandbox.close();
    }
    result.entries = [];
    for await (const e of diffUpperDir(upperDir)) {
      const h = e.header;
      // Reading every body proves the diff can read what any container uid wrote (0600 files).
      let bytes = 0;
      if (Buffer.isBuffer(e.body)) bytes = e.body.length;
      else if (e.body) for await (const chunk of e.body) bytes += (chunk as Buffer).length;
      result.entries.push({ name: h.name, type: h.type, uid: h.uid, gid: h.gid, mode: h.mode, xattrs: Object.keys(h.xattrs ?? {}), bytes });
    }
  } catch (err) {
    result.error = { code: (err as { code?: string }).code, message: (err as Error).message };
  }
}
process.stdout.write(JSON.stringify({ state: userNamespaceState(), uidMap: readIdMap('uid'), detection, results }) + '\n');
