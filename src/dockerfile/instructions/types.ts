/**
 * Typed Dockerfile instructions: one variant per keyword, every flag BuildKit accepts, values as
 * written (not yet expanded: see expand.ts). Each keeps its parse-tree node for locations,
 * error messages and history (`node.original`).
 */
import type { Heredoc, InstructionNode } from '../parser/types.js';

interface Base {
  node: InstructionNode;
}

/** `FROM [--platform=p] image [AS name]`. */
export interface FromInstruction extends Base {
  kind: 'from';
  /** Base image reference, stage name or `scratch`, as written. */
  image: string;
  /** Stage name lower-cased (stage names are case-insensitive). */
  stageName?: string;
  /** Stage name as written, for lint messages. */
  stageNameAsWritten?: string;
  /** The `AS` keyword as written (FromAsCasing lint). */
  asKeyword?: string;
  platform?: string;
}

/** One `NAME[=default]` of an ARG line. */
export interface ArgDefinition {
  key: string;
  /** Undefined when no `=` was written (value from build args or the global scope). */
  value?: string;
}
export interface ArgInstruction extends Base {
  kind: 'arg';
  args: ArgDefinition[];
}

export interface KeyValue {
  key: string;
  value: string;
  /** True for the legacy `ENV key value` form (no `=`). */
  legacy: boolean;
}
export interface EnvInstruction extends Base {
  kind: 'env';
  pairs: KeyValue[];
}
export interface LabelInstruction extends Base {
  kind: 'label';
  pairs: KeyValue[];
}

/**
 * A command line: exec form (`["a","b"]`, `shell: false`) or shell form (one string that the
 * configured SHELL runs, `shell: true`).
 */
export interface CommandLine {
  args: string[];
  shell: boolean;
}

export type MountType = 'bind' | 'cache' | 'tmpfs' | 'secret' | 'ssh';
export type MountSharing = 'shared' | 'private' | 'locked';

/** One `RUN --mount=...`. Defaults that depend on the type are filled in (see mounts.ts). */
export interface RunMount {
  type: MountType;
  /** Mount point in the container. Secret: defaults to /run/secrets/<id>. SSH: executor picks. */
  target?: string;
  /** Path inside `from` (bind, cache) or the secret/ssh source. */
  source?: string;
  /** Stage name, stage index or image for bind/cache; never variable-expanded (BuildKit). */
  from?: string;
  readOnly: boolean;
  /** Cache id (defaults to the target), secret id (defaults to the target's base name), ssh id (`default`). */
  id?: string;
  sharing?: MountSharing;
  /** File mode (octal in the Dockerfile) for cache/secret/ssh. */
  mode?: number;
  uid?: number;
  gid?: number;
  /** secret/ssh: fail when the secret/agent is not provided. */
  required: boolean;
  /** tmpfs size limit in bytes. */
  size?: number;
  /** secret: also (or only) expose the secret as this environment variable. */
  env?: string;
}

export type RunNetwork = 'default' | 'none' | 'host';
export type RunSecurity = 'sandbox' | 'insecure';

export interface RunInstruction extends Base {
  kind: 'run';
  command: CommandLine;
  /** Raw `--mount` values, kept so they can be re-parsed after variable expansion. */
  mountSpecs: string[];
  mounts: RunMount[];
  network?: RunNetwork;
  security?: RunSecurity;
  /** Heredoc bodies: with a shell-form `RUN <<EOF`, the first is the script. */
  heredocs: Heredoc[];
}

export interface CmdInstruction extends Base {
  kind: 'cmd';
  command: CommandLine;
  heredocs: Heredoc[];
}
export interface EntrypointInstruction extends Base {
  kind: 'entrypoint';
  command: CommandLine;
  heredocs: Heredoc[];
}
export interface ShellInstruction extends Base {
  kind: 'shell';
  shell: string[];
}

/** A heredoc used as a COPY/ADD source: `COPY <<EOF /dest`. */
export interface SourceContent {
  /** The delimiter name, used as the file name. */
  path: string;
  data: string;
  /** False when the delimiter was quoted: no variable expansion of `data`. */
  expand: boolean;
}

interface FileOpBase extends Base {
  /** Source paths/URLs (heredoc sources are in `contents`). */
  sources: string[];
  contents: SourceContent[];
  dest: string;
  chown?: string;
  chmod?: string;
  link: boolean;
  excludes: string[];
}
export interface CopyInstruction extends FileOpBase {
  kind: 'copy';
  from?: string;
  parents: boolean;
}
export interface AddInstruction extends FileOpBase {
  kind: 'add';
  /** Undefined = default (BuildKit: keep only when BUILDKIT_CONTEXT_KEEP_GIT_DIR is set). */
  keepGitDir?: boolean;
  checksum?: string;
  /** Undefined = default (unpack local archives, not remote ones). */
  unpack?: boolean;
}

/** Durations in nanoseconds, as the image config stores them; 0/undefined = inherit default. */
export interface HealthConfig {
  /** `["NONE"]`, `["CMD", ...args]` or `["CMD-SHELL", command]`. */
  test: string[];
  interval?: number;
  timeout?: number;
  startPeriod?: number;
  startInterval?: number;
  retries?: number;
}
export interface HealthcheckInstruction extends Base {
  kind: 'healthcheck';
  health: HealthConfig;
}

export interface ExposeInstruction extends Base {
  kind: 'expose';
  /** Port specs as written (`80`, `80/udp`, `8000-8010/tcp`); see parsePortSpec. */
  ports: string[];
}
export interface UserInstruction extends Base {
  kind: 'user';
  user: string;
}
export interface WorkdirInstruction extends Base {
  kind: 'workdir';
  path: string;
}
export interface VolumeInstruction extends Base {
  kind: 'volume';
  volumes: string[];
}
export interface StopsignalInstruction extends Base {
  kind: 'stopsignal';
  signal: string;
}
export interface MaintainerInstruction extends Base {
  kind: 'maintainer';
  maintainer: string;
}
export interface OnbuildInstruction extends Base {
  kind: 'onbuild';
  /** The trigger text as stored in the image config (`ONBUILD ` removed). */
  expression: string;
  /** The trigger parsed, validated now so mistakes surface in this build, not the child's. */
  trigger: Instruction;
}

export type Instruction =
  | FromInstruction
  | ArgInstruction
  | EnvInstruction
  | LabelInstruction
  | RunInstruction
  | CmdInstruction
  | EntrypointInstruction
  | ShellInstruction
  | CopyInstruction
  | AddInstruction
  | HealthcheckInstruction
  | ExposeInstruction
  | UserInstruction
  | WorkdirInstruction
  | VolumeInstruction
  | StopsignalInstruction
  | MaintainerInstruction
  | OnbuildInstruction;

export type InstructionKind = Instruction['kind'];

/** Every keyword, upper-case, in the order Docker documents them. */
export const INSTRUCTION_KEYWORDS = [
  'FROM', 'RUN', 'CMD', 'LABEL', 'MAINTAINER', 'EXPOSE', 'ENV', 'ADD', 'COPY', 'ENTRYPOINT',
  'VOLUME', 'USER', 'WORKDIR', 'ARG', 'ONBUILD', 'STOPSIGNAL', 'HEALTHCHECK', 'SHELL',
] as const;
