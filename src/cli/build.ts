import { readFile, writeFile } from 'node:fs/promises';
import { build } from '../build/index.js';
import type { BuildOptions } from '../build/options.js';
import { parseDockerfile } from '../dockerfile/parser/index.js';
import { callCheck, callOutline, callTargets, formatCheck, formatOutline, formatTargets } from '../dockerfile/plan/index.js';
import { GantryError } from '../util/errors.js';
import { formatHelp, parseFlags, rejectUnsupported, UsageError, type FlagSpec, type ParsedFlags } from './flags.js';
import { localContextDir, parseBuildArgs, parseLabels, resolveDockerfilePath } from './build-options.js';
import { summarize } from './executor.js';
import { cliLogger } from './log.js';
import { mergedRegistryOptions, registryFlags } from './registry-flags.js';
import { applyRunFlags, runFlags } from './run-flags.js';
import type { CliIO } from './main.js';


const flags: FlagSpec[] = [
  { name: 'file', short: 'f', kind: 'string', valueName: 'path', help: 'Dockerfile (default: CONTEXT/Dockerfile)' },
  { name: 'tag', short: 't', kind: 'list', valueName: 'name:tag', help: 'image name; pushed with --push' },
  { name: 'build-arg', kind: 'list', valueName: 'KEY[=VALUE]', help: 'build argument; a bare KEY takes its value from the environment' },
  { name: 'target', kind: 'string', valueName: 'stage', help: 'stage to build (default: the last)' },
  { name: 'platform', kind: 'string', valueName: 'os/arch[/variant]', help: 'platform of the image (selects base images; no emulation)' },
  { name: 'label', kind: 'list', valueName: 'key=value', help: 'label added to the image config' },
  { name: 'push', kind: 'bool', help: 'push the image to every --tag (same as --output type=registry)' },
  { name: 'output', short: 'o', kind: 'list', valueName: 'type=oci|docker|registry|image,dest=…', help: 'where the image goes: type=oci,dest=DIR (layout dir; tar=false default), type=docker,dest=FILE (docker-archive), type=registry / type=image,push=true' },
  { name: 'call', kind: 'string', default: 'build', valueName: 'build|targets|outline|check', help: 'what to do with the Dockerfile: build it, list its targets, outline its build args, or lint it' },
  { name: 'iidfile', kind: 'string', valueName: 'file', help: 'write the image ID (config digest) to this file' },
  { name: 'metadata-file', kind: 'string', valueName: 'file', help: 'write build result metadata (JSON) to this file' },
  { name: 'reproducible', kind: 'bool', help: 'clamp timestamps (SOURCE_DATE_EPOCH or 0) so rebuilds give the same digest' },
  { name: 'no-cache', kind: 'bool', help: 'do not read the layer cache (--cache-to still stores new layers)' },
  { name: 'pull', kind: 'bool', help: 'always resolve base images from their registry (gantry always does)' },
  { name: 'progress', kind: 'string', default: 'auto', valueName: 'auto|plain|tty|quiet|rawjson', help: 'progress output style' },
  { name: 'quiet', short: 'q', kind: 'bool', help: 'print only the image digest' },
  { name: 'cache-from', kind: 'list', valueName: 'type=…', help: 'layer cache to read: type=registry,ref=REPO | type=local,src=DIR' },
  { name: 'cache-to', kind: 'list', valueName: 'type=…', help: 'layer cache to write (and read): type=registry,ref=REPO | type=local,dest=DIR' },
  { name: 'cache-dir', kind: 'string', valueName: 'dir', help: 'base-image cache filled by `gantry warmer`: base images found there are not downloaded' },
  { name: 'ssh', kind: 'list', valueName: 'default|id=…', help: 'SSH agent socket for RUN --mount=type=ssh', unsupported: 'SSH agent forwarding is not implemented yet; use a secret mount for keys' },
  ...runFlags,
  { name: 'load', kind: 'bool', help: 'load into a Docker daemon', unsupported: 'gantry talks to no Docker daemon; use --output type=docker,dest=FILE and `docker load -i FILE`' },
  { name: 'annotation', kind: 'list', valueName: 'key=value', help: 'manifest annotation', unsupported: 'annotations are not implemented yet' },
  { name: 'provenance', kind: 'string', valueName: 'mode', help: 'provenance attestation', unsupported: 'attestations are not implemented yet' },
  { name: 'sbom', kind: 'string', valueName: 'mode', help: 'SBOM attestation', unsupported: 'attestations are not implemented yet' },
  { name: 'verbosity', short: 'v', kind: 'string', default: 'info', valueName: 'level', help: 'trace, debug, info, warn, error' },
  { name: 'log-format', kind: 'string', default: 'text', valueName: 'text|json', help: 'log format' },
  ...registryFlags,
  { name: 'help', short: 'h', kind: 'bool', help: 'show this help' },
];

const USAGE = 'gantry build [flags] [CONTEXT]';
const DESCRIPTION = `Builds the Dockerfile in CONTEXT (default ".") like "docker buildx build", without a daemon.
With no --push and no --output, the image is written as an OCI layout directory and the path is printed.`;

interface OutputSpec {
  type: string;
  attrs: Record<string, string>;
}

function parseOutput(text: string): OutputSpec {
  const attrs: Record<string, string> = {};
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    // docker's `-o DIR` shorthand means type=local (a plain file tree), which gantry does not write.
    if (eq <= 0) throw new UsageError(`invalid --output "${text}": expected key=value pairs such as type=oci,dest=out`);
    attrs[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  const type = attrs.type;
  if (!type) throw new UsageError(`invalid --output "${text}": missing type=`);
  return { type, attrs };
}

function applyOutputs(p: ParsedFlags, opts: BuildOptions): void {
  let push = p.values.push === true;
  for (const text of p.values.output as string[]) {
    const o = parseOutput(text);
    switch (o.type) {
      case 'registry':
        push = true;
        break;
      case 'image':
        if (o.attrs.push === 'true') push = true;
        break;
      case 'oci':
        if (!o.attrs.dest) throw new UsageError(`--output type=oci needs dest=DIR`);
        if (o.attrs.tar === 'true') throw new UsageError('--output type=oci,tar=true is not supported yet: gantry writes OCI layouts as directories (tar=false)');
        opts.ociLayoutPath = o.attrs.dest;
        break;
      case 'docker':
      case 'tar':
        if (!o.attrs.dest) throw new UsageError(`--output type=${o.type} needs dest=FILE`);
        opts.tarPath = o.attrs.dest;
        break;
      default:
        throw new UsageError(`--output type=${o.type} is not supported yet`, 'supported: type=oci,dest=DIR  type=docker,dest=FILE  type=registry');
    }
  }
  const tags = p.values.tag as string[];
  if (push && tags.length === 0) throw new UsageError('--push needs at least one --tag');
  opts.destinations = tags;
  opts.noPush = !push;
}

async function runCall(call: string, p: ParsedFlags, context: string, io: CliIO): Promise<number> {
  const ctxDir = localContextDir(context);
  const file = resolveDockerfilePath((p.values.file as string) || 'Dockerfile', ctxDir);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new GantryError('NOT_FOUND', `reading Dockerfile ${file}: ${(err as Error).message}`, { hint: 'pass the Dockerfile with -f' });
  }
  const planOpts = { buildArgs: parseBuildArgs(p.values['build-arg'] as string[]), env: io.env, ...(p.values.target ? { target: p.values.target as string } : {}), ...(p.values.platform ? { targetPlatform: p.values.platform as string } : {}) };
  if (call === 'check') {
    const parsed = parseDockerfile(text, { file });
    const result = callCheck(parsed, planOpts);
    io.stdout(formatCheck(result, parsed.lines));
    return result.errors.length > 0 ? 1 : 0;
  }
  const parsed = parseDockerfile(text, { file });
  if (call === 'targets') io.stdout(formatTargets(callTargets(parsed)));
  else io.stdout(formatOutline(callOutline(parsed, planOpts)));
  return 0;
}

export async function buildCommand(args: string[], io: CliIO): Promise<number> {
  const p = parseFlags(args, flags, io.env);
  if (p.values.help) {
    io.stdout(formatHelp(USAGE, DESCRIPTION, flags));
    return 0;
  }
  if (p.positionals.length > 1) throw new UsageError(`gantry build takes one CONTEXT, got ${p.positionals.length}`, `usage: ${USAGE}`);
  const context = p.positionals[0] ?? '.';
  const call = p.values.call as string;
  if (!['build', 'targets', 'outline', 'check'].includes(call)) throw new UsageError(`invalid --call "${call}": expected build, targets, outline or check`);
  rejectUnsupported(p, flags, 'gantry build');
  if (call !== 'build') return runCall(call, p, context, io);

  const quiet = p.values.quiet === true || p.values.progress === 'quiet';
  const logger = cliLogger(quiet ? 'error' : (p.values.verbosity as string), p.values['log-format'] as string, false, (l) => io.stderr(l + '\n'));
  const opts: BuildOptions = {
    context,
    buildArgs: parseBuildArgs(p.values['build-arg'] as string[]),
    labels: parseLabels(p.values.label as string[]),
    skipUnusedStages: true,
    reproducible: p.values.reproducible === true,
    registry: mergedRegistryOptions(p, io.env),
    skipPushPermissionCheck: false,
    env: io.env,
    logger,
  };
  if (p.values.file) opts.dockerfile = p.values.file as string;
  else {
    const ctxDir = localContextDir(context);
    if (ctxDir) opts.dockerfile = resolveDockerfilePath('Dockerfile', ctxDir);
  }
  if (p.values.target) opts.target = p.values.target as string;
  if (p.values.platform) opts.platform = p.values.platform as string;
  if (p.values['cache-dir']) opts.baseImageCache = { dir: p.values['cache-dir'] as string };
  applyOutputs(p, opts);
  applyRunFlags(p, opts, io.env);
  const cacheFrom = p.values['no-cache'] === true ? [] : ((p.values['cache-from'] as string[] | undefined) ?? []);
  const cacheTo = (p.values['cache-to'] as string[] | undefined) ?? [];
  if (cacheFrom.length > 0 || cacheTo.length > 0) {
    // BuildKit caches every step, file copies included.
    opts.cache = { enabled: true, copyLayers: true, from: cacheFrom, to: cacheTo };
    // --no-cache: store new layers without reading any (BuildKit's meaning).
    if (p.values['no-cache'] === true) opts.cache.noLookup = true;
  }
  const result = await build(opts);
  if (p.values.iidfile) await writeFile(p.values.iidfile as string, result.imageId);
  if (p.values['metadata-file']) {
    await writeFile(p.values['metadata-file'] as string, JSON.stringify({ 'containerimage.digest': result.digest, 'containerimage.config.digest': result.imageId, 'image.name': (p.values.tag as string[]).join(',') }, null, 2) + '\n');
  }
  if (quiet) io.stdout(result.digest + '\n');
  else io.stdout(summarize(result) + '\n');
  return 0;
}
