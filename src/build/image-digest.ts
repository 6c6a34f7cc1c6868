/**
 * The manifest digest an image reference resolves to for the build's platform, without reading
 * its layers: what keys a RUN bind mount `from=<image>` (the digest names every file of it).
 * Resolved once per reference and build.
 */
import { resolveImage } from './base.js';
import type { BuildSession } from './session.js';

const resolved = new WeakMap<BuildSession, Map<string, Promise<string | undefined>>>();

/** undefined when the image does not resolve: the step is then not keyed, and fails (or not) when it reads the files. */
export function imageManifestDigest(s: BuildSession, ref: string): Promise<string | undefined> {
  let byRef = resolved.get(s);
  if (!byRef) resolved.set(s, (byRef = new Map()));
  let p = byRef.get(ref);
  if (!p) {
    p = (async () => {
      try {
        const img = await resolveImage(ref, s.plan.targetPlatform, s.client, s.signal, s.baseImages);
        await img.reader.close?.();
        return img.manifestRaw.digest;
      } catch (err) {
        s.logger.log('debug', `image ${ref} not resolved for a cache key (${(err as Error).message}): the step is not looked up`);
        return undefined;
      }
    })();
    byRef.set(ref, p);
  }
  return p;
}
