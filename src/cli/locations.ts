// Local stores are imported when used: a registry-to-registry copy should not pay for loading them.
import type { ImageReader, ImageWriter } from '../oci/store.js';
import { RegistryImageReader, RegistryImageWriter } from '../registry/image.js';
import { formatReference, parseReference } from '../registry/reference.js';
import type { RegistryOptions } from '../registry/options.js';

/**
 * Where an image lives, in the transport syntax skopeo users know: `oci:DIR[:TAG]`,
 * `docker-archive:FILE[:REF]`, `docker://REF`, or a bare registry reference.
 */
export type ImageLocation =
  | { kind: 'registry'; reference: string }
  | { kind: 'oci'; dir: string; tag?: string }
  | { kind: 'docker-archive'; file: string; ref?: string };

/** Splits `PATH[:SUFFIX]` where the suffix may itself contain `:` (an image reference). */
function splitPathSuffix(rest: string, suffixMayHaveColon: boolean): [string, string | undefined] {
  const i = suffixMayHaveColon ? rest.indexOf(':') : rest.lastIndexOf(':');
  if (i < 0) return [rest, undefined];
  return [rest.slice(0, i), rest.slice(i + 1) || undefined];
}

export function parseImageLocation(text: string): ImageLocation {
  if (text.startsWith('oci:')) {
    const [dir, tag] = splitPathSuffix(text.slice(4), false);
    return { kind: 'oci', dir, ...(tag ? { tag } : {}) };
  }
  if (text.startsWith('docker-archive:')) {
    const [file, ref] = splitPathSuffix(text.slice('docker-archive:'.length), true);
    return { kind: 'docker-archive', file, ...(ref ? { ref } : {}) };
  }
  const reference = text.startsWith('docker://') ? text.slice('docker://'.length) : text;
  return { kind: 'registry', reference: formatReference(parseReference(reference)) };
}

export async function openImageReader(loc: ImageLocation, registry: RegistryOptions): Promise<{ reader: ImageReader; ref?: string }> {
  switch (loc.kind) {
    case 'registry':
      return { reader: new RegistryImageReader({ reference: loc.reference, options: registry }) };
    case 'oci':
      return { reader: await (await import('../oci/layout.js')).OciLayoutReader.open(loc.dir, loc.tag) };
    case 'docker-archive':
      return { reader: await (await import('../oci/dockerarchive.js')).DockerArchiveReader.open(loc.file, loc.ref) };
  }
}

/** The writer and the tags the root manifest gets there. */
export async function openImageWriter(loc: ImageLocation, registry: RegistryOptions): Promise<{ writer: ImageWriter; tags: string[] }> {
  switch (loc.kind) {
    case 'registry': {
      const ref = parseReference(loc.reference);
      return { writer: new RegistryImageWriter({ reference: ref, options: registry }), tags: ref.tag ? [ref.tag] : [] };
    }
    case 'oci':
      return { writer: await (await import('../oci/layout.js')).OciLayoutWriter.create(loc.dir), tags: [loc.tag ?? 'latest'] };
    case 'docker-archive':
      return { writer: await (await import('../oci/dockerarchive-writer.js')).DockerArchiveWriter.create(loc.file), tags: loc.ref ? [loc.ref] : [] };
  }
}
