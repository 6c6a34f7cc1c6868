import { GantryError } from '../util/errors.js';
import { DockerArchiveReader } from './dockerarchive.js';
import { DockerArchiveWriter } from './dockerarchive-writer.js';
import { OciLayoutReader, OciLayoutWriter } from './layout.js';
import type { ImageReader, ImageWriter } from './store.js';

/**
 * The local image references skopeo users know: `oci:DIR[:REF]` and `docker-archive:FILE[:REF]`.
 * As in containers/image, the path ends at the first colon, so REF may itself contain colons
 * (`docker-archive:out.tar:app:1.0`). Registry references are src/registry's business.
 */

export type LocalTransport = 'oci' | 'docker-archive';

export interface LocalReference {
  transport: LocalTransport;
  path: string;
  /** Tag or digest (oci), `NAME:TAG` or `@N` (docker-archive). */
  ref?: string;
}

/** Parses `oci:...` / `docker-archive:...`; returns undefined for anything else. */
export function parseLocalReference(spec: string): LocalReference | undefined {
  const m = /^(oci|docker-archive):(.*)$/.exec(spec);
  if (!m) return undefined;
  const transport = m[1] as LocalTransport;
  const rest = m[2]!;
  const colon = rest.indexOf(':');
  const path = colon < 0 ? rest : rest.slice(0, colon);
  const ref = colon < 0 ? undefined : rest.slice(colon + 1);
  if (!path) throw new GantryError('REFERENCE_INVALID', `"${spec}": missing ${transport === 'oci' ? 'directory' : 'file'} path`, { hint: `use ${transport}:PATH[:REF]` });
  if (ref === '') throw new GantryError('REFERENCE_INVALID', `"${spec}": empty reference after the path`);
  return { transport, path, ...(ref !== undefined ? { ref } : {}) };
}

/** Opens a local reference for reading; the reference's REF becomes the reader's default. */
export async function openLocalReader(ref: LocalReference): Promise<ImageReader> {
  return ref.transport === 'oci' ? OciLayoutReader.open(ref.path, ref.ref) : DockerArchiveReader.open(ref.path, ref.ref);
}

/** Opens a local reference for writing; `tags` are what copyImage should name the image. */
export async function openLocalWriter(ref: LocalReference): Promise<{ writer: ImageWriter; tags: string[] }> {
  const tags = ref.ref ? [ref.ref] : [];
  if (ref.transport === 'oci') return { writer: await OciLayoutWriter.create(ref.path), tags };
  return { writer: await DockerArchiveWriter.create(ref.path), tags };
}
