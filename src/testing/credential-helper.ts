import { readFileSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface HelperCredentials {
  Username: string;
  Secret: string;
}

export interface InstalledCredentialHelper {
  /** Put this directory first on PATH so `docker-credential-<name>` resolves to the fake. */
  binDir: string;
  /** Every invocation so far, one string each: `get <serverURL>`, `store <serverURL>`, `erase <serverURL>`, `list`, ... */
  calls(): string[];
}

// The helper is a standalone Node script (run by this same node binary) so it works without a
// shell and behaves like the real helpers: JSON on stdin/stdout, exit 1 with the
// "credentials not found" text that docker's client library maps to ErrCredentialsNotFound.
// Dynamic import() runs both as CommonJS and as ESM (an extensionless file under a
// "type": "module" package.json is loaded as ESM).
const SCRIPT = `
import('node:fs').then((fs) => {
const [storeFile, logFile] = [__STORE_FILE__, __LOG_FILE__];
const action = process.argv[2] || '';
let input = '';
try { input = fs.readFileSync(0, 'utf8'); } catch {}
const load = () => JSON.parse(fs.readFileSync(storeFile, 'utf8'));
const save = (s) => fs.writeFileSync(storeFile, JSON.stringify(s, null, 2));
const notFound = () => { process.stdout.write('credentials not found in native keychain\\n'); process.exit(1); };
switch (action) {
  case 'get': {
    const url = input.trim();
    fs.appendFileSync(logFile, 'get ' + url + '\\n');
    const c = load()[url];
    if (!c) notFound();
    process.stdout.write(JSON.stringify({ ServerURL: url, Username: c.Username, Secret: c.Secret }));
    break;
  }
  case 'store': {
    const c = JSON.parse(input);
    fs.appendFileSync(logFile, 'store ' + c.ServerURL + '\\n');
    const s = load();
    s[c.ServerURL] = { Username: c.Username, Secret: c.Secret };
    save(s);
    break;
  }
  case 'erase': {
    const url = input.trim();
    fs.appendFileSync(logFile, 'erase ' + url + '\\n');
    const s = load();
    if (!s[url]) notFound();
    delete s[url];
    save(s);
    break;
  }
  case 'list': {
    fs.appendFileSync(logFile, 'list\\n');
    const s = load();
    process.stdout.write(JSON.stringify(Object.fromEntries(Object.entries(s).map(([k, v]) => [k, v.Username]))));
    break;
  }
  case 'version':
    fs.appendFileSync(logFile, 'version\\n');
    process.stdout.write('gantry-fake-helper 0.0.0\\n');
    break;
  default:
    fs.appendFileSync(logFile, 'unknown ' + action + '\\n');
    process.stderr.write('unknown action: ' + action + '\\n');
    process.exit(1);
}
});
`;

/**
 * Installs a fake `docker-credential-<name>` implementing the docker-credential-helpers protocol
 * (get/store/erase/list/version) over a JSON file in `dir`, and logs each call.
 */
export async function installCredentialHelper(
  dir: string,
  name: string,
  creds: Record<string, HelperCredentials>,
): Promise<InstalledCredentialHelper> {
  const binDir = join(dir, 'bin');
  await mkdir(binDir, { recursive: true });
  const storeFile = join(dir, `credential-helper-${name}.json`);
  const logFile = join(dir, `credential-helper-${name}.log`);
  await writeFile(storeFile, JSON.stringify(creds, null, 2));
  await writeFile(logFile, '');
  const script =
    `#!${process.execPath}\n` +
    SCRIPT.replace('__STORE_FILE__', JSON.stringify(storeFile)).replace('__LOG_FILE__', JSON.stringify(logFile));
  const bin = join(binDir, `docker-credential-${name}`);
  await writeFile(bin, script);
  await chmod(bin, 0o755);
  return {
    binDir,
    calls: () => readFileSync(logFile, 'utf8').split('\n').filter(Boolean),
  };
}
