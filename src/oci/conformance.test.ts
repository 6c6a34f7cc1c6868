import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { sha256 } from '../util/digest.js';
import { conformanceDir } from '../testing/paths.js';
import { parseConfig } from './config.js';
import { parseManifest, validateDocument } from './manifest.js';
import { isDockerMediaType } from './mediatype.js';

const dir = join(conformanceDir, 'image-spec');
const have = existsSync(join(dir, 'validation-cases.json'));

interface Case {
  id: string;
  mediaType: string;
  comment: string;
  expectValid: boolean;
  document: string;
}

describe('image-spec conformance', { skip: have ? false : 'conformance data not found' }, () => {
  test('every spec example validates against its media type', () => {
    const index = JSON.parse(readFileSync(join(dir, 'examples/index.json'), 'utf8')) as { examples: Array<{ file: string; mediaType: string }> };
    assert.equal(index.examples.length, 13);
    for (const ex of index.examples) {
      const problems = validateDocument(ex.mediaType, readFileSync(join(dir, ex.file)));
      assert.deepEqual(problems, [], `${ex.file} should be valid`);
    }
  });

  test('every validation case yields its expected verdict', () => {
    const data = JSON.parse(readFileSync(join(dir, 'validation-cases.json'), 'utf8')) as { cases: Case[] };
    let agreed = 0;
    const wrong: string[] = [];
    for (const c of data.cases) {
      const problems = validateDocument(c.mediaType, c.document);
      if ((problems.length === 0) === c.expectValid) agreed++;
      else wrong.push(`${c.id} (${c.comment}): expected ${c.expectValid ? 'valid' : 'invalid'}, problems: ${problems.join('; ') || 'none'}`);
    }
    console.log(`image-spec validation: ${agreed}/${data.cases.length}`);
    assert.deepEqual(wrong, []);
    assert.equal(data.cases.length, 65);
  });

  test('docker v2 documents hash to their recorded digests and parse as Docker types', () => {
    const index = JSON.parse(readFileSync(join(dir, 'docker-v2-compat/index.json'), 'utf8')) as {
      documents: Array<{ file: string; expectedDigest: string; sizeBytes: number; mediaTypeAfterConversion: string }>;
      conversion: Record<string, string>;
    };
    for (const d of index.documents) {
      const bytes = readFileSync(join(dir, 'docker-v2-compat', d.file));
      assert.equal(bytes.length, d.sizeBytes, d.file);
      assert.equal(sha256(bytes), d.expectedDigest, d.file);
      const dockerType = Object.entries(index.conversion).find(([, oci]) => oci === d.mediaTypeAfterConversion)![0];
      if (d.file.includes('config')) {
        const cfg = parseConfig(bytes);
        assert.ok(cfg.rootfs.diff_ids.length > 0, d.file);
      } else {
        const parsed = parseManifest({ mediaType: dockerType, bytes, digest: d.expectedDigest });
        assert.equal(parsed.mediaType, dockerType);
        assert.ok(isDockerMediaType(parsed.mediaType));
        // Children and layers are Docker types too (the manifest's config is application/octet-stream upstream).
        const descs = parsed.kind === 'index' ? parsed.index.manifests : parsed.manifest.layers;
        for (const desc of descs) assert.ok(isDockerMediaType(desc.mediaType), `${d.file}: ${desc.mediaType}`);
      }
      // Upstream: after renaming the Docker media types to OCI ones, the document is a valid OCI document.
      let converted = bytes.toString('utf8');
      for (const [from, to] of Object.entries(index.conversion)) converted = converted.split(from).join(to);
      assert.deepEqual(validateDocument(d.mediaTypeAfterConversion, converted), [], d.file);
    }
  });
});
