import { enterUserNamespace } from '../run/rootless-userns.js';
import type { Logger } from '../util/logger.js';

/** The sandbox a command line asks for: `--sandbox=X`, `--sandbox X`, else $GANTRY_SANDBOX, else auto. */
export function requestedSandbox(argv: readonly string[], env: NodeJS.ProcessEnv): string {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.startsWith('--sandbox=')) return a.slice('--sandbox='.length);
    if (a === '--sandbox' && i + 1 < argv.length) return argv[i + 1]!;
  }
  return env.GANTRY_SANDBOX || 'auto';
}

/**
 * The rootless backend needs the whole builder inside a user namespace (unpack, RUN and diff must
 * see container ids), so a non-root `build`/`executor` re-executes itself there once, before any
 * work. Returns the exit code of that child, or undefined to carry on in this process. With
 * `--sandbox=auto`, a machine without user namespaces still builds what needs no RUN sandbox.
 */
export async function reexecInUserNamespace(argv: readonly string[], env: NodeJS.ProcessEnv, logger: Logger): Promise<number | undefined> {
  const command = argv[0];
  if (command !== 'build' && command !== 'executor') return undefined;
  if (typeof process.getuid !== 'function' || process.getuid() === 0) return undefined;
  const sandbox = requestedSandbox(argv, env);
  if (sandbox !== 'auto' && sandbox !== 'rootless') return undefined;
  try {
    return await enterUserNamespace({ logger, env });
  } catch (err) {
    if (sandbox === 'rootless') throw err;
    logger.log('warn', `not entering a user namespace (${(err as Error).message}); RUN steps will need another sandbox`);
    return undefined;
  }
}
