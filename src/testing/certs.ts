import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from './exec.js';

export interface TestCa {
  certFile: string;
  keyFile: string;
}

export interface KeyPairFiles {
  certFile: string;
  keyFile: string;
}

// P-256 keys: generated in milliseconds, and Go's TLS stack and libtrust both accept them.
const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A self-signed CA in `dir` (ca.crt / ca.key), valid for two days. */
export async function makeCa(dir: string, commonName = 'gantry test CA'): Promise<TestCa> {
  const certFile = join(dir, 'ca.crt');
  const keyFile = join(dir, 'ca.key');
  await run('openssl', [
    'req', '-x509', ...EC_KEY, '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', `/CN=${commonName}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
  ], { check: true });
  return { certFile, keyFile };
}

/** A certificate signed by `ca` for 127.0.0.1 and localhost, written as `<name>.crt` / `<name>.key`. */
export async function makeServerCert(ca: TestCa, dir: string, name = 'server'): Promise<KeyPairFiles> {
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  const csrFile = join(dir, `${name}.csr`);
  const extFile = join(dir, `${name}.ext`);
  await writeFile(extFile, [
    'basicConstraints=CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth',
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
    '',
  ].join('\n'));
  await run('openssl', ['req', '-new', ...EC_KEY, '-keyout', keyFile, '-out', csrFile, '-subj', '/CN=localhost'], { check: true });
  await run('openssl', [
    'x509', '-req', '-in', csrFile, '-CA', ca.certFile, '-CAkey', ca.keyFile, '-CAcreateserial',
    '-out', certFile, '-days', '2', '-extfile', extFile,
  ], { check: true });
  return { certFile, keyFile };
}

/** A self-signed certificate + key for signing tokens (the registry trusts it via rootcertbundle). */
export async function makeSigningCert(dir: string, name = 'token-signer'): Promise<KeyPairFiles> {
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  await run('openssl', [
    'req', '-x509', ...EC_KEY, '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'keyUsage=critical,digitalSignature',
  ], { check: true });
  return { certFile, keyFile };
}
