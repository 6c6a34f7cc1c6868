/**
 * Syntax check for image references (docker/distribution grammar), so a typo'd stage name in
 * `COPY --from=` or `FROM` is reported here, with a suggestion, rather than as a failed pull.
 */
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = `(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9a-fA-F:.]+\\])(?::[0-9]+)?`;
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*';
const TAG = '[\\w][\\w.-]{0,127}';
const DIGEST = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';
const REFERENCE = new RegExp(`^(?:${DOMAIN}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*(?::${TAG})?(?:@${DIGEST})?$`);

/**
 * Local image stores gantry can build from (`FROM oci:/path/layout:tag`,
 * `COPY --from=docker-archive:/images/app.tar`), as skopeo spells them; a path is all they need.
 */
const LOCAL_STORE = /^(?:oci|docker-archive):[^\s]+$/;

export function isValidImageReference(ref: string): boolean {
  if (LOCAL_STORE.test(ref)) return true;
  if (ref.length > 255 + 128 + 100) return false;
  return REFERENCE.test(ref);
}
