import { isDigest } from '../util/digest.js';
import { GantryError } from '../util/errors.js';
import { Problems } from './check.js';
import { checkImageIndex } from './manifest.js';
import type { Descriptor, ImageIndex } from './types.js';

/** The annotation an OCI layout's index.json uses to name (tag) an entry. */
export const REF_NAME = 'org.opencontainers.image.ref.name';
/** containerd's full image name annotation, which `docker save` (>= 25) also writes. */
export const IMAGE_NAME = 'io.containerd.image.name';

export const LAYOUT_HEADER = '{"imageLayoutVersion":"1.0.0"}';

export function parseLayoutIndex(doc: unknown, what: string): ImageIndex {
  const p = new Problems();
  checkImageIndex(p, doc);
  if (!p.ok) throw new GantryError('LAYOUT_INVALID', `invalid ${what}: ${p.summary()}`);
  return doc as ImageIndex;
}

export function tagsOf(index: ImageIndex): string[] {
  return index.manifests.map((d) => d.annotations?.[REF_NAME]).filter((t): t is string => t !== undefined);
}

/**
 * The index.json entry a reference names: a tag (ref.name annotation), a digest, or nothing,
 * which is only unambiguous when the layout holds a single entry.
 */
export function resolveIndexEntry(index: ImageIndex, ref: string | undefined, where: string): Descriptor {
  const tags = tagsOf(index);
  const listed = tags.length ? tags.join(', ') : 'none';
  if (ref === undefined || ref === '') {
    if (index.manifests.length === 1) return index.manifests[0]!;
    if (index.manifests.length === 0) throw new GantryError('NOT_FOUND', `${where} holds no images`);
    throw new GantryError('INVALID_ARGUMENT', `${where} holds ${index.manifests.length} images; say which one (tags: ${listed})`, {
      tags,
      hint: `append :TAG to the reference, e.g. ${where}:${tags[0] ?? 'latest'}`,
    });
  }
  if (isDigest(ref)) {
    const byDigest = index.manifests.find((d) => d.digest === ref);
    if (byDigest) return byDigest;
    throw new GantryError('NOT_FOUND', `${where} has no image with digest ${ref}`, { tags });
  }
  const matches = index.manifests.filter((d) => d.annotations?.[REF_NAME] === ref);
  if (matches.length === 1) return matches[0]!;
  if (matches.length > 1 && matches.every((m) => m.digest === matches[0]!.digest)) return matches[0]!;
  if (matches.length > 1) throw new GantryError('LAYOUT_INVALID', `${where}: tag "${ref}" names ${matches.length} different images`);
  throw new GantryError('NOT_FOUND', `${where} has no image tagged "${ref}" (tags: ${listed})`, { tags });
}
