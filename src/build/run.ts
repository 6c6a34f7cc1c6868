/**
 * RUN: one command in a sandbox over the stage's root filesystem, its changes captured as a layer.
 *
 * Design. The stage keeps one merged root directory (the same RootFs COPY writes into). A RUN
 * mounts an overlay whose only lower layer is that root (the sandbox adds its skeleton of mount
 * points on top), with a fresh upper and work directory under the build's work dir; the command
 * runs; the sandbox is closed (every mount lived in the RUN's own mount namespace, so nothing is
 * left mounted); `diffUpperDir(upper)` is exactly what changed (whiteouts for deletions, opaque
 * markers for replaced directories, copied-up files in full) and becomes the layer, written with
 * the same options as COPY layers (compression, reproducible mtime clamp). The root is then
 * brought up to date by RootFs.catchUp, which unpacks that new layer onto it the next time a step
 * needs files: the unpacker already applies whiteouts, opaque directories and hard links, so the
 * root is updated by one well-tested path, at a cost of O(changed files), and the upperdir is
 * removed right away. (Keeping one directory per layer as overlay lowers would avoid that
 * unpack, but then COPY, COPY --from and the next stages would need an overlay or a merge of
 * their own, and the kernel caps the lower layers an overlay takes: one root stays simpler.)
 *
 * With the inplace sandbox (unprivileged pods: no mounts at all) there is no overlay: the stage's
 * root is the sandbox's root (`/`), kept by InplaceRootFs (stage.ts), the command runs on it
 * directly, and the layer is the sandbox's walk snapshot since the last baseline, which the root
 * already contains (so nothing is unpacked afterwards).
 *
 * Semantics are BuildKit's (dockerfile2llb dispatchRun): shell form through the config's SHELL
 * (default `/bin/sh -c`), exec form as is, heredocs as described at runCommand; the environment
 * is the config Env plus the ARGs in scope (never persisted), HOME from the image's passwd when
 * unset (as runc does); USER resolved in the image (run-user.ts); a missing WORKDIR is created;
 * history `RUN [|N K=V…] <args> # buildkit`, always with a layer.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseHeredocWord, type RunInstruction } from '../dockerfile/index.js';
import { diffUpperDir } from '../fs/diff/index.js';
import type { ImageConfig } from '../oci/types.js';
import { createSandbox, type RunResult, type RunSpec } from '../run/index.js';
import { GantryError } from '../util/errors.js';
import { BUILDKIT_SUFFIX } from './history.js';
import type { ImageLayer } from './layers.js';
import { withShell } from './metadata.js';
import { prepareMounts, type PreparedMounts } from './run-mounts.js';
import { resolveRunUser } from './run-user.js';
import type { BuildSession } from './session.js';
import type { SourceTree } from './sources.js';
import { writeIndexedLayer } from './path-root.js';

/** Where BuildKit mounts a `#!` heredoc script to run it. */
const PIPES_DIR = '/dev/pipes';

export interface RunCommand {
  /** What the sandbox executes (and what history shows). */
  args: string[];
  /** A `#!` heredoc, mounted executable at `/dev/pipes/<name>`. */
  script?: { name: string; data: string };
}

/**
 * The argv of a RUN, as BuildKit builds it:
 * - `RUN <<EOF` (the whole command is one heredoc): a body starting with `#!` is mounted as an
 *   executable file and run by the shell by path; any other body is given to the shell as the
 *   command string (`sh -c BODY`), so it works even for shells without heredoc support;
 * - any other heredoc use (`RUN <<EOF bash`, `RUN cat <<A <<B`): the command line and the raw
 *   bodies, each followed by its delimiter, go to the shell together as one script;
 * - shell form is then wrapped in the SHELL (default `/bin/sh -c`); exec form stays as written.
 */
export function runCommand(inst: RunInstruction, cfg: ImageConfig): RunCommand {
  let args = [...inst.command.args];
  let script: RunCommand['script'];
  if (inst.heredocs.length > 0 && inst.command.shell) {
    if (args.length !== 1) throw new GantryError('DOCKERFILE_INVALID', `parsing produced an invalid run command: [${args.join(' ')}]`);
    const simple = parseHeredocWord(args[0]!.trim());
    if (simple) {
      const first = inst.heredocs[0]!;
      if (cfg.os !== 'windows' && first.content.startsWith('#!')) {
        script = { name: first.name, data: first.content };
        args = [`${PIPES_DIR}/${first.name}`];
      } else args = [first.content];
    } else {
      let full = args[0]!;
      for (const h of inst.node.heredocs) full += '\n' + h.content + h.name;
      args = [full];
    }
  }
  if (inst.command.shell) args = withShell(cfg, args);
  const out: RunCommand = { args };
  if (script) out.script = script;
  return out;
}

/** BuildKit's history line: `RUN |2 A=1 B=2 /bin/sh -c cmd # buildkit`. */
export function runCreatedBy(args: readonly string[], historyArgs: readonly string[]): string {
  const prefix = historyArgs.length > 0 ? [`|${historyArgs.length}`, ...historyArgs] : [];
  return 'RUN ' + [...prefix, ...args].join(' ') + BUILDKIT_SUFFIX;
}

/** Splits output chunks into lines for the logger, hiding secret values. */
class LineSink {
  private partial = '';
  constructor(private readonly emit: (line: string) => void, private readonly redact: (s: string) => string) {}
  write(chunk: Buffer): void {
    const parts = (this.partial + chunk.toString('utf8')).split('\n');
    this.partial = parts.pop() ?? '';
    if (this.partial.length > 64 * 1024) {
      parts.push(this.partial);
      this.partial = '';
    }
    for (const p of parts) this.emit(this.redact(p.replace(/\r$/, '')));
  }
  flush(): void {
    if (this.partial !== '') this.emit(this.redact(this.partial));
    this.partial = '';
  }
}

function redactor(secrets: readonly Buffer[]): (s: string) => string {
  const values = secrets.map((b) => b.toString('utf8').trim()).filter((v) => v.length > 0);
  if (values.length === 0) return (s) => s;
  return (s) => values.reduce((acc, v) => acc.split(v).join('****'), s);
}

export interface RunStepInput {
  session: BuildSession;
  /** The RUN, expanded (mounts parsed with variables resolved). */
  inst: RunInstruction;
  /** Instruction text for messages (`RUN make`). */
  display: string;
  config: ImageConfig;
  /** The stage's root, caught up with every layer so far. */
  root: string;
  /** `KEY -> value` the RUN sees: config Env plus ARGs in scope. */
  env: Record<string, string>;
  historyArgs: string[];
  /** Prefix of logged output lines, e.g. `[build 3/7]`. */
  prefix: string;
  /** The tree a `--mount=type=bind[,from=…]` reads. */
  tree(from: string | undefined): Promise<SourceTree>;
}

/** `snapshotted`: the layer is already in the root (inplace), nothing needs unpacking. */
export async function runStep(inp: RunStepInput): Promise<{ layer: ImageLayer; createdBy: string; snapshotted: boolean }> {
  const { session: s, inst, config } = inp;
  if (inst.security === 'insecure') {
    throw new GantryError('UNSUPPORTED', 'RUN --security=insecure is not supported', {
      hint: 'gantry never grants a RUN extra privileges; remove --security=insecure',
    });
  }
  const c = config.config ?? {};
  const cmd = runCommand(inst, config);
  const createdBy = runCreatedBy(cmd.args, inp.historyArgs);
  const cwd = c.WorkingDir || '/';
  const user = await resolveRunUser(c.User ?? '', inp.root);
  const kind = await s.run.sandbox();

  const dir = await mkdtemp(join(s.workDir, 'run-'));
  const upperDir = join(dir, 'upper');
  const scratch = join(dir, 'scratch');
  await mkdir(upperDir);
  await mkdir(scratch, { mode: 0o700 });
  let mounts: PreparedMounts | undefined;
  try {
    mounts = await prepareMounts(inst.mounts, { ctx: s.run, cwd, scratch, now: s.now, tree: inp.tree });
    const env = Object.entries(inp.env).map(([k, v]) => `${k}=${v}`);
    if (!('HOME' in inp.env)) env.push(`HOME=${user.home}`);
    for (const e of mounts.env) {
      const key = e.slice(0, e.indexOf('='));
      const i = env.findIndex((x) => x.slice(0, x.indexOf('=')) === key);
      if (i >= 0) env[i] = e;
      else env.push(e);
    }
    const runMounts = [...mounts.mounts];
    if (cmd.script) {
      const file = join(scratch, 'heredoc-script');
      await writeFile(file, cmd.script.data, { mode: 0o755 });
      runMounts.push({ type: 'bind', source: file, target: `${PIPES_DIR}/${cmd.script.name}`, readonly: true });
    }
    const redact = redactor(mounts.secrets);
    const out = new LineSink((line) => s.logger.log('info', `${inp.prefix} ${line}`, { stream: 'stdout' }), redact);
    const err = new LineSink((line) => s.logger.log('info', `${inp.prefix} ${line}`, { stream: 'stderr' }), redact);
    const spec: RunSpec = {
      argv: cmd.args,
      env,
      cwd,
      user: { uid: user.uid, gid: user.gid, groups: user.groups },
      network: inst.network ?? s.run.opts.network,
      mounts: runMounts,
      stdout: (chunk) => out.write(chunk),
      stderr: (chunk) => err.write(chunk),
    };
    if (s.signal) spec.signal = s.signal;
    const inplace = kind === 'inplace' ? s.run.inplace : undefined;
    if (kind === 'inplace' && !inplace) throw new GantryError('INTERNAL', 'the inplace sandbox was chosen but not created');
    const resolvConf = inplace ? undefined : await s.run.resolvConf();
    // inplace: the stage's root is the sandbox's root, RUN runs on it directly and its layer is
    // the walk snapshot since the last baseline; the sandbox lives as long as the build.
    const sandbox = inplace ?? (await createSandbox(kind, {
      lowerDirs: [inp.root],
      upperDir,
      workDir: join(dir, 'work'),
      mergedDir: join(dir, 'merged'),
      hosts: await s.run.hostsFile(),
      ...(resolvConf ? { resolvConf } : {}),
      logger: s.logger,
      stateDir: dir,
    }));
    let result: RunResult;
    try {
      result = await sandbox.run(spec);
    } finally {
      out.flush();
      err.flush();
      if (!inplace) await sandbox.close();
    }
    if (result.exitCode !== 0) {
      const why = result.signal ? `killed by ${result.signal}` : `exit code ${result.exitCode}`;
      const tail = result.tail.slice(-20).map(redact);
      throw new GantryError('BUILD_FAILED', `${inp.display}: ${why}` + (tail.length > 0 ? `\n${tail.join('\n')}` : ''), {
        hint: 'the command failed inside the image; its output is above',
        exitCode: result.exitCode,
      });
    }
    // Snapshot cost (diff + layer write) at debug level: bench/run.ts reads it.
    const snapStart = performance.now();
    if (inplace) {
      const snap = inplace.snapshot(s.signal ? { signal: s.signal } : {});
      const layer = await writeIndexedLayer(s.store, s.layerIndex, snap.entries(), s.layerOptions);
      const snapshotMs = performance.now() - snapStart;
      s.logger.log('debug', `${inp.prefix} snapshot ${snapshotMs.toFixed(1)}ms (walk ${snap.walkMs.toFixed(1)}ms)`, { snapshotMs, walkMs: snap.walkMs });
      return { layer, createdBy, snapshotted: true };
    }
    // Kaniko's --ignore-path keeps paths out of RUN layers whichever sandbox runs the command.
    const ignored = (s.run.opts.inplace?.ignorePaths ?? []).map((p) => p.replace(/\/+$/, '') || '/');
    const ignore = ignored.length > 0 ? (p: string) => ignored.some((ip) => ip === '/' || p === ip || p.startsWith(ip + '/')) : undefined;
    const diff = diffUpperDir(upperDir, { logger: s.logger, ...(ignore ? { ignore } : {}), ...(s.signal ? { signal: s.signal } : {}) });
    const layer = await writeIndexedLayer(s.store, s.layerIndex, diff, s.layerOptions);
    const snapshotMs = performance.now() - snapStart;
    s.logger.log('debug', `${inp.prefix} snapshot ${snapshotMs.toFixed(1)}ms`, { snapshotMs });
    return { layer, createdBy, snapshotted: false };
  } finally {
    await mounts?.release();
    await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  }
}
