import type { Writable } from 'node:stream';

/** Where a RUN's output goes: a stream (backpressure honoured) or a callback per chunk. */
export type OutputSink = Writable | ((chunk: Buffer) => void);

export type RunMount =
  /** A host file or directory (a build-context bind, or a secret file: then `readonly`). */
  | { type: 'bind'; source: string; target: string; readonly?: boolean }
  /** A fresh tmpfs; `size` in bytes. */
  | { type: 'tmpfs'; target: string; size?: number }
  /** A host directory the caller keeps between builds (`RUN --mount=type=cache`). */
  | { type: 'cache'; source: string; target: string };

export interface RunUser {
  uid: number;
  gid: number;
  /** Supplementary groups, exactly these (the caller resolves them from the image's /etc/group). */
  groups: number[];
}

export interface RunSpec {
  /** Already shell-wrapped by the caller: `['/bin/sh', '-c', '…']`, or the exec form. */
  argv: string[];
  /** `KEY=VALUE`; exactly the environment the process gets, nothing added. */
  env: string[];
  /** Absolute path inside the rootfs; created (root, 0755) when missing, as BuildKit does. */
  cwd: string;
  user: RunUser;
  /** `none`: an empty network namespace with only `lo`; `default` and `host`: the host's network. */
  network: 'default' | 'none' | 'host';
  mounts: RunMount[];
  /**
   * Host CA certificate files (PEM) to trust inside the RUN. They are never written into a layer:
   * see EXTRA_CA_FILE / CA_BUNDLE_FILE in ns-sandbox.ts for where they appear.
   */
  extraCaFiles?: string[];
  stdout?: OutputSink;
  stderr?: OutputSink;
  /** Aborting kills the whole RUN (every process in it) and run() rejects with ABORTED. */
  signal?: AbortSignal;
}

export interface RunResult {
  /** The exit status; 128 + the signal number when the process was killed by a signal. */
  exitCode: number;
  /** Set when the process was killed by a signal, e.g. `SIGKILL`. */
  signal?: string;
  /** The last lines of stdout and stderr together, for the caller's error message. */
  tail: string[];
}

export type SandboxKind = 'ns' | 'rootless' | 'inplace';

export interface RunSandbox {
  readonly kind: SandboxKind;
  /**
   * Runs one command. A non-zero exit is a result, not an error: the caller words the failure.
   * Throws only when the sandbox itself could not be set up, or on cancellation (ABORTED).
   */
  run(spec: RunSpec): Promise<RunResult>;
  /** Kills anything still running and removes the sandbox's own temporary files. Idempotent. */
  close(): Promise<void>;
}
