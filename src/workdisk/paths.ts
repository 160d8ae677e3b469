/** Naming and sizing rules of the work-disk job. */

/**
 * The work-seed image path that belongs beside a rootfs image: whitespace trimmed, `""` stays `""`,
 * `X.ext4` becomes `X.work-seed.ext4`, any other name gets `.work-seed` appended.
 */
export function workSeedPath(rootfsPath: string): string {
  const p = rootfsPath.trim();
  if (p === '') return '';
  if (p.endsWith('.ext4')) return `${p.slice(0, -'.ext4'.length)}.work-seed.ext4`;
  return `${p}.work-seed`;
}

const MiB = 1024 * 1024;

/**
 * Size of a work-seed image for a payload whose regular files total `regularFileBytes`: twice the
 * payload plus 256 MiB of slack, at least 512 MiB, rounded up to a multiple of 64 MiB.
 */
export function workSeedSizeBytes(regularFileBytes: number): number {
  const want = Math.max(2 * regularFileBytes + 256 * MiB, 512 * MiB);
  return Math.ceil(want / (64 * MiB)) * 64 * MiB;
}
