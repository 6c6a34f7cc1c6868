import { readFileSync } from 'node:fs';
import { formatError, exitCodeFor } from './output.js';
import { UsageError, suggest } from './flags.js';
import { lineLogger } from '../util/logger.js';

export interface CliIO {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
}

const defaultIO: CliIO = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  env: process.env,
};

type Command = (args: string[], io: CliIO) => Promise<number>;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

const commands: Record<string, { summary: string; load: () => Promise<Command> }> = {
  executor: { summary: 'build and push like Kaniko\'s /kaniko/executor (same flags)', load: async () => (await import('./executor.js')).executorCommand },
  warmer: { summary: 'download base images into a cache directory like Kaniko\'s /kaniko/warmer', load: async () => (await import('./warmer.js')).warmerCommand },
  build: { summary: 'build a Dockerfile (docker buildx build-style flags)', load: async () => (await import('./build.js')).buildCommand },
  inspect: { summary: 'print an image\'s manifest (or config) as JSON', load: async () => (await import('./inspect.js')).inspectCommand },
  copy: { summary: 'copy an image between registries, oci: layouts and docker-archive: files', load: async () => (await import('./copy.js')).copyCommand },
  prune: { summary: 'remove gantry\'s local caches (RUN cache mounts, unpacked layers, indexes, code cache)', load: async () => (await import('./prune.js')).pruneCommand },
  version: { summary: 'print the version', load: async () => async (_a, io) => (io.stdout(`gantry ${version()}\n`), 0) },
};

export function usage(): string {
  const rows = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(10)}${c.summary}`);
  return `gantry builds OCI images from Dockerfiles without a Docker daemon and without privileges.

Usage: gantry <command> [flags]

Commands:
${rows.join('\n')}

Run "gantry <command> --help" for the flags of a command.
`;
}

/**
 * The process entry (bin/gantry.js, the executor image): may re-execute the builder in a user
 * namespace first (rootless RUN), then runs the command.
 */
export async function runCli(argv: string[]): Promise<number> {
  try {
    const { reexecInUserNamespace } = await import('./userns.js');
    const code = await reexecInUserNamespace(argv, process.env, lineLogger({ level: 'info' }));
    if (code !== undefined) return code;
  } catch (err) {
    defaultIO.stderr(formatError(err) + '\n');
    return exitCodeFor(err);
  }
  return main(argv);
}

export async function main(argv: string[], io: CliIO = defaultIO): Promise<number> {
  const [name, ...rest] = argv;
  try {
    if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
      io.stdout(usage());
      return name === undefined ? 2 : 0;
    }
    if (name === '--version') {
      io.stdout(`gantry ${version()}\n`);
      return 0;
    }
    const cmd = commands[name];
    if (!cmd) {
      const s = suggest(name, Object.keys(commands));
      throw new UsageError(`unknown command "${name}"`, s ? `did you mean "gantry ${s}"?` : 'run "gantry --help" to list the commands');
    }
    return await (await cmd.load())(rest, io);
  } catch (err) {
    io.stderr(formatError(err) + '\n');
    return exitCodeFor(err);
  }
}
