import { parseManifest } from '../oci/manifest.js';
import { parsePlatform, hostPlatform, selectManifest } from '../oci/platform.js';
import { streamToBuffer } from './stream.js';
import { formatHelp, parseFlags, UsageError, type FlagSpec } from './flags.js';
import { openImageReader, parseImageLocation } from './locations.js';
import { registryFlags, registryOptionsFromFlags } from './registry-flags.js';
import type { CliIO } from './main.js';

const flags: FlagSpec[] = [
  { name: 'config', kind: 'bool', help: 'print the image config instead of the manifest (resolves an index to one platform)' },
  { name: 'platform', kind: 'string', valueName: 'os/arch[/variant]', help: 'platform picked from an index with --config or --resolve (default: this machine)' },
  { name: 'resolve', kind: 'bool', help: 'for an index, print the manifest of one platform instead of the index' },
  { name: 'raw', kind: 'bool', help: 'print the stored bytes exactly (default: indented JSON)' },
  ...registryFlags,
  { name: 'help', short: 'h', kind: 'bool', help: 'show this help' },
];

const USAGE = 'gantry inspect [flags] IMAGE';
const DESCRIPTION = `Prints an image's manifest (or index, or with --config its config) as JSON.
IMAGE is a registry reference, oci:DIR[:TAG] or docker-archive:FILE[:REF]. The digest goes to stderr.`;

export async function inspectCommand(args: string[], io: CliIO): Promise<number> {
  const p = parseFlags(args, flags, io.env);
  if (p.values.help) {
    io.stdout(formatHelp(USAGE, DESCRIPTION, flags));
    return 0;
  }
  if (p.positionals.length !== 1) throw new UsageError(`inspect needs exactly one IMAGE, got ${p.positionals.length}`, `usage: ${USAGE}`);
  const { reader, ref } = await openImageReader(parseImageLocation(p.positionals[0]!), registryOptionsFromFlags(p, 'pull', io.env));
  try {
    let raw = await reader.getManifest(ref);
    let parsed = parseManifest(raw, { what: `manifest of ${reader.name}` });
    if (parsed.kind === 'index' && (p.values.config || p.values.resolve)) {
      const platform = p.given.has('platform') ? parsePlatform(p.values.platform as string) : hostPlatform();
      const desc = selectManifest(parsed.index, platform);
      raw = await reader.getManifestByDescriptor(desc);
      parsed = parseManifest(raw, { what: `manifest ${desc.digest} of ${reader.name}` });
    }
    let bytes = raw.bytes;
    let digest = raw.digest;
    if (p.values.config) {
      if (parsed.kind !== 'manifest') throw new UsageError('--config needs an image manifest');
      const desc = parsed.manifest.config;
      bytes = await streamToBuffer(await reader.openBlob(desc), 4 * 1024 * 1024, `config ${desc.digest}`);
      digest = desc.digest;
    }
    io.stdout(p.values.raw ? bytes.toString('utf8') : JSON.stringify(JSON.parse(bytes.toString('utf8')), null, 2) + '\n');
    io.stderr(`${digest}\n`);
    return 0;
  } finally {
    await reader.close?.();
  }
}
