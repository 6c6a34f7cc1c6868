import { GantryError } from '../../util/errors.js';
import type { Credentials } from './credentials.js';
import { builtin } from '../../util/builtin.js';

/** docker-credential-helpers marks an identity token by this username. */
const TOKEN_USERNAME = '<token>';
const TIMEOUT_MS = 60_000;

/**
 * Runs `docker-credential-<helper> get` with the server URL on stdin (the docker-credential-helpers
 * protocol). "credentials not found" means anonymous, as in docker; every other failure is an
 * error because silently pulling anonymously hides misconfiguration.
 */
export async function credentialsFromHelper(helper: string, serverUrl: string, env: NodeJS.ProcessEnv): Promise<Credentials | undefined> {
  const program = `docker-credential-${helper}`;
  const { code, stdout, stderr, spawnError } = await runHelper(program, serverUrl, env);
  if (spawnError) {
    const notFound = (spawnError as NodeJS.ErrnoException).code === 'ENOENT';
    throw new GantryError('CREDENTIALS', `running credential helper ${program} for ${serverUrl}: ${spawnError.message}`, {
      hint: notFound ? `install ${program} on PATH, or remove "${helper}" from credHelpers/credsStore in config.json` : undefined,
    });
  }
  const out = stdout.trim();
  if (code !== 0) {
    if (/credentials not found/i.test(out) || /credentials not found/i.test(stderr)) return undefined;
    throw new GantryError('CREDENTIALS', `credential helper ${program} failed for ${serverUrl} (exit ${code}): ${(out || stderr).trim().slice(0, 500)}`);
  }
  let parsed: { Username?: unknown; Secret?: unknown };
  try {
    parsed = JSON.parse(out) as typeof parsed;
  } catch {
    throw new GantryError('CREDENTIALS', `credential helper ${program} printed something that is not JSON for ${serverUrl}`);
  }
  const username = typeof parsed.Username === 'string' ? parsed.Username : '';
  const secret = typeof parsed.Secret === 'string' ? parsed.Secret : '';
  if (username === '' && secret === '') return undefined;
  if (username === TOKEN_USERNAME) return { identityToken: secret, source: program };
  return { username, password: secret, source: program };
}

async function runHelper(program: string, input: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string; spawnError?: Error }> {
  // Loaded on first use: most runs configure no helper, and every command's start-up would pay for it.
  const { spawn } = builtin<typeof import('node:child_process')>('node:child_process');
  return new Promise((resolve) => {
    const child = spawn(program, ['get'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let settled = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish({ code: null, stdout, stderr, spawnError: new Error(`timed out after ${TIMEOUT_MS / 1000}s`) });
    }, TIMEOUT_MS);
    const finish = (r: { code: number | null; stdout: string; stderr: string; spawnError?: Error }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (err) => finish({ code: null, stdout, stderr, spawnError: err }));
    child.on('close', (code) => finish({ code, stdout, stderr }));
    child.stdin.on('error', () => {}); // helper may exit before reading; its exit code tells us
    child.stdin.end(input);
  });
}
