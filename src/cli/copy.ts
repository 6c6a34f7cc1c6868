import { copyImage } from '../oci/copy.js';
import { parsePlatform } from '../oci/platform.js';
import { formatHelp, parseFlags, UsageError, type FlagSpec } from './flags.js';
import { openImageReader, openImageWriter, parseImageLocation } from './locations.js';
import { registryFlags, registryOptionsFromFlags } from './registry-flags.js';
import type { CliIO } from './main.js';
import { writeFile } from 'node:fs/promises';

const flags: FlagSpec[] = [
  { name: 'platform', kind: 'string', valueName: 'os/arch[/variant]', help: 'copy only this platform of a multi-platform image' },
  { name: 'all', short: 'a', kind: 'bool', help: 'copy every platform of a multi-platform image (default when the destination can hold an index)' },
  { name: 'concurrency', kind: 'string', default: '4', valueName: 'n', help: 'parallel blob transfers' },
  { name: 'chunk-size', kind: 'string', default: '0', valueName: 'bytes', help: 'upload blobs in chunks of this size (0: one request; GHCR accepts at most 4194304)' },
  { name: 'retries', kind: 'string', valueName: 'n', help: 'retries per request on network errors, 408/429/5xx' },
  { name: 'digest-file', kind: 'string', valueName: 'file', help: 'write the digest of the copied manifest to this file' },
  ...registryFlags,
  { name: 'help', short: 'h', kind: 'bool', help: 'show this help' },
];

const USAGE = 'gantry copy [flags] SOURCE DESTINATION';
const DESCRIPTION = `Copies an image (or a multi-platform index) byte for byte, keeping its digest.
SOURCE and DESTINATION are a registry reference (optionally docker://REF), oci:DIR[:TAG] or
docker-archive:FILE[:REF]. Credentials come from $DOCKER_CONFIG/config.json (or ~/.docker).`;

function positiveInt(value: string, flag: string, min = 0): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`invalid value "${value}" for --${flag}: expected an integer >= ${min}`);
  return n;
}

export async function copyCommand(args: string[], io: CliIO): Promise<number> {
  const p = parseFlags(args, flags, io.env);
  if (p.values.help) {
    io.stdout(formatHelp(USAGE, DESCRIPTION, flags));
    return 0;
  }
  if (p.positionals.length !== 2) throw new UsageError(`copy needs SOURCE and DESTINATION, got ${p.positionals.length} argument(s)`, `usage: ${USAGE}`);
  const [srcText, dstText] = p.positionals as [string, string];
  const src = parseImageLocation(srcText);
  const dst = parseImageLocation(dstText);
  const concurrency = positiveInt(p.values.concurrency as string, 'concurrency', 1);
  const chunkSize = positiveInt(p.values['chunk-size'] as string, 'chunk-size');
  const retries = p.given.has('retries') ? positiveInt(p.values.retries as string, 'retries') : undefined;
  if (p.values.all && p.given.has('platform')) throw new UsageError('--all and --platform exclude each other');

  const pull = { ...registryOptionsFromFlags(p, 'pull', io.env), concurrency, ...(retries !== undefined ? { retries } : {}) };
  const push = { ...registryOptionsFromFlags(p, 'push', io.env), concurrency, chunkSize, ...(retries !== undefined ? { retries } : {}) };
  const { reader, ref } = await openImageReader(src, pull);
  const { writer, tags } = await openImageWriter(dst, push);
  try {
    const platform = p.given.has('platform') ? parsePlatform(p.values.platform as string) : p.values.all ? ('all' as const) : undefined;
    const result = await copyImage(reader, ref, writer, { tags, concurrency, ...(platform ? { platform } : {}) });
    await writer.commit?.();
    if (p.values['digest-file']) {
      await writeFile(p.values['digest-file'] as string, result.digest);
    }
    io.stdout(`${result.digest}\n`);
    return 0;
  } catch (err) {
    await writer.abort?.();
    throw err;
  } finally {
    await reader.close?.();
  }
}
