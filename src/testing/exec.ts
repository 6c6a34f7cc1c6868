import { spawn } from 'node:child_process';
import { constants } from 'node:os';

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  input?: string | Buffer;
  /** Throw (with stderr in the message) when the exit code is not 0. */
  check?: boolean;
  timeoutMs?: number;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout as bytes, for binary output (tar streams, raw manifests). */
  stdoutBuffer: Buffer;
}

/**
 * Runs a program to completion and collects its output. Exit codes are data, not errors, so tests
 * can assert on failures; only a missing binary (spawn error) or `check` rejects.
 */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = opts.timeoutMs
      ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs)
      : undefined;
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      const stdoutBuffer = Buffer.concat(out);
      const result: RunResult = {
        // Shell convention for a death by signal: 128 + its number.
        code: code ?? 128 + (signal ? constants.signals[signal] : 0),
        stdoutBuffer,
        stdout: stdoutBuffer.toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      };
      if (opts.check && result.code !== 0) {
        reject(new Error(`${cmd} ${args.join(' ')} exited with ${signal ?? result.code}\n${result.stderr}${result.stdout}`));
        return;
      }
      resolve(result);
    });
    child.stdin.on('error', () => {
      // The program may exit without reading its input; that is its business, not a test failure.
    });
    child.stdin.end(opts.input ?? '');
  });
}
