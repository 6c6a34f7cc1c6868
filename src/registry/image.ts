import type { Readable } from 'node:stream';
import { GantryError } from '../util/errors.js';
import type { Descriptor, RawManifest } from '../oci/types.js';
import type { ImageReader, ImageWriter, WriteBlobOptions } from '../oci/store.js';
import { RegistryClient } from './client.js';
import { pushScope } from './auth/scope.js';
import { openBlob } from './blob-download.js';
import { checkPushPermission as probePush, hasBlob, uploadBlob } from './blob-upload.js';
import { getManifest, putManifest } from './manifests.js';
import { pullSources, type PullSource } from './mirrors.js';
import type { RegistryOptions, ResolvedRegistryOptions } from './options.js';
import { formatReference, manifestIdentifier, normalizeRegistry, parseReference, type Reference, type Repository } from './reference.js';

export interface RemoteImageParams {
  reference: string | Reference;
  options?: RegistryOptions | ResolvedRegistryOptions;
  /** Share connections and tokens between readers/writers; otherwise each owns a client. */
  client?: RegistryClient;
}

function toRef(r: string | Reference): Reference {
  return typeof r === 'string' ? parseReference(r) : r;
}

/**
 * Reads an image from a registry. With mirrors/maps configured, the manifest is fetched from the
 * first source that has it and every later read (child manifests, blobs) stays on that source,
 * so content of one image never mixes registries.
 */
export class RegistryImageReader implements ImageReader {
  readonly name: string;
  readonly reference: Reference;
  private readonly client: RegistryClient;
  private readonly ownsClient: boolean;
  private source: PullSource | undefined;

  constructor(params: RemoteImageParams) {
    this.reference = toRef(params.reference);
    this.name = formatReference(this.reference);
    this.ownsClient = !params.client;
    this.client = params.client ?? new RegistryClient(params.options ?? {});
  }

  /** The source that served the manifest, once known. */
  get servedFrom(): PullSource | undefined {
    return this.source;
  }

  private async fromSources<T>(op: (repo: Repository) => Promise<T>, doing: string, signal?: AbortSignal): Promise<T> {
    if (this.source) return op(this.source);
    const sources = pullSources(this.reference, this.client.options);
    const failures: Array<{ source: PullSource; err: unknown }> = [];
    for (const source of sources) {
      try {
        const out = await op(source);
        this.source = source;
        return out;
      } catch (err) {
        if (signal?.aborted || (err instanceof GantryError && err.code === 'ABORTED')) throw err;
        failures.push({ source, err });
        if (source.via !== 'origin') {
          this.client.options.logger.log('warn', `${doing} from ${source.via} ${source.registry}/${source.repository} failed: ${(err as Error).message}; trying the next source`);
        }
      }
    }
    const last = failures[failures.length - 1]!;
    if (last.source.via === 'origin' || failures.length === 1) throw last.err;
    const all = failures.map((f) => `${f.source.registry}/${f.source.repository}: ${(f.err as Error).message}`).join('; ');
    throw new GantryError(
      last.err instanceof GantryError ? last.err.code : 'REGISTRY_ERROR',
      `${doing} ${this.name}: not found on any configured mirror/mapped registry (${all})`,
      { hint: 'the original registry was not tried because of --skip-default-registry-fallback' },
      { cause: last.err },
    );
  }

  getManifest(ref?: string, signal?: AbortSignal): Promise<RawManifest> {
    const id = ref ?? manifestIdentifier(this.reference);
    return this.fromSources((repo) => getManifest(this.client, repo, id, { signal }), 'pulling manifest', signal);
  }

  getManifestByDescriptor(desc: Descriptor, signal?: AbortSignal): Promise<RawManifest> {
    return this.fromSources((repo) => getManifest(this.client, repo, desc.digest, { signal }), 'pulling manifest', signal);
  }

  openBlob(desc: Descriptor, signal?: AbortSignal): Promise<Readable> {
    return this.fromSources((repo) => openBlob(this.client, repo, desc, { signal }), 'pulling blob', signal);
  }

  async close(): Promise<void> {
    if (this.ownsClient) await this.client.close();
  }
}

/** Writes an image to a registry repository. Never uses mirrors. */
export class RegistryImageWriter implements ImageWriter {
  readonly name: string;
  /** As given, so callers can take the tag to push under from it. */
  readonly reference: Reference;
  readonly repository: Repository;
  private readonly client: RegistryClient;
  private readonly ownsClient: boolean;

  constructor(params: RemoteImageParams) {
    const ref = toRef(params.reference);
    this.reference = ref;
    this.repository = { registry: normalizeRegistry(ref.registry), repository: ref.repository };
    this.name = `${this.repository.registry}/${this.repository.repository}`;
    this.ownsClient = !params.client;
    this.client = params.client ?? new RegistryClient(params.options ?? {});
  }

  /** Pings the registry and gets the push token now, so a copy can overlap them with reading the source. */
  warmUp(signal?: AbortSignal): Promise<void> {
    return this.client.warmUp(this.repository.registry, [pushScope(this.repository.repository)], signal);
  }

  hasBlob(desc: Descriptor, signal?: AbortSignal): Promise<boolean> {
    return hasBlob(this.client, this.repository, desc, signal);
  }

  async writeBlob(desc: Descriptor, open: () => Promise<Readable>, opts: WriteBlobOptions = {}): Promise<void> {
    const mountFrom = opts.mountFrom && normalizeRegistry(opts.mountFrom.registry) === this.repository.registry ? { registry: this.repository.registry, repository: opts.mountFrom.repository } : undefined;
    await uploadBlob(this.client, this.repository, desc, open, { signal: opts.signal, mountFrom });
  }

  putManifest(raw: RawManifest, tags: string[], signal?: AbortSignal): Promise<void> {
    return putManifest(this.client, this.repository, raw, tags, signal);
  }

  checkPushPermission(signal?: AbortSignal): Promise<void> {
    return probePush(this.client, this.repository, signal);
  }

  async commit(): Promise<void> {}

  /** Uploaded blobs stay (unreferenced, the registry's GC reclaims them); no manifest was written. */
  async abort(): Promise<void> {}

  async close(): Promise<void> {
    if (this.ownsClient) await this.client.close();
  }
}

/** Checks that the configured credentials may push to `reference` (Kaniko's pre-build check). */
export async function checkPushPermission(reference: string | Reference, options: RegistryOptions | ResolvedRegistryOptions = {}, client?: RegistryClient, signal?: AbortSignal): Promise<void> {
  const ref = toRef(reference);
  const c = client ?? new RegistryClient(options);
  try {
    await probePush(c, { registry: ref.registry, repository: ref.repository }, signal, { waitForCancel: !client });
  } finally {
    if (!client) await c.close();
  }
}
