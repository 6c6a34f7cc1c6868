import { enterUserNamespace, planUserNamespace, USERNS_ENV } from '../run/rootless-userns.js';
import { silentLogger, type Logger } from '../util/logger.js';

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
  if (typeof process.getuid !== 'function' || process.getuid() === 0) return undefined;
  if (command === 'prune') return reexecPrune(argv, env, logger);
  if (command !== 'build' && command !== 'executor') return undefined;
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

/**
 * Rootless builds leave files owned by the user's subordinate ids in the caches (unpacked layers,
 * RUN cache mounts), which the user cannot remove from outside. Inside the builds' namespace
 * they are mapped ids of its root, so `prune` goes there too, but only with a full mapping: a
 * squashed namespace maps nothing more than the user already owns. Where it cannot, prune runs
 * here and says which files it could not remove.
 */
async function reexecPrune(argv: readonly string[], env: NodeJS.ProcessEnv, logger: Logger): Promise<number | undefined> {
  if (env[USERNS_ENV] || argv.includes('--help') || argv.includes('-h')) return undefined;
  if (planUserNamespace().mode !== 'full') return undefined;
  try {
    // Its warnings are about builds (squashed ownership) and do not apply to removing files.
    return await enterUserNamespace({ logger: silentLogger, env });
  } catch (err) {
    logger.log('debug', `prune: not entering a user namespace (${(err as Error).message})`);
    return undefined;
  }
}
