/** Feature flags (kernel doc: super.rst, "s_feature_compat" and friends). */

export const COMPAT = {
  dir_prealloc: 0x1,
  imagic_inodes: 0x2,
  has_journal: 0x4,
  ext_attr: 0x8,
  resize_inode: 0x10,
  dir_index: 0x20,
  lazy_bg: 0x40,
  exclude_inode: 0x80,
  exclude_bitmap: 0x100,
  sparse_super2: 0x200,
  fast_commit: 0x400,
  stable_inodes: 0x800,
  orphan_file: 0x1000,
} as const;

export const INCOMPAT = {
  compression: 0x1,
  filetype: 0x2,
  needs_recovery: 0x4,
  journal_dev: 0x8,
  meta_bg: 0x10,
  extent: 0x40,
  '64bit': 0x80,
  mmp: 0x100,
  flex_bg: 0x200,
  ea_inode: 0x400,
  dirdata: 0x1000,
  metadata_csum_seed: 0x2000,
  large_dir: 0x4000,
  inline_data: 0x8000,
  encrypt: 0x10000,
  casefold: 0x20000,
} as const;

export const RO_COMPAT = {
  sparse_super: 0x1,
  large_file: 0x2,
  btree_dir: 0x4,
  huge_file: 0x8,
  gdt_csum: 0x10,
  dir_nlink: 0x20,
  extra_isize: 0x40,
  has_snapshot: 0x80,
  quota: 0x100,
  bigalloc: 0x200,
  metadata_csum: 0x400,
  replica: 0x800,
  readonly: 0x1000,
  project: 0x2000,
  shared_blocks: 0x4000,
  verity: 0x8000,
  orphan_present: 0x10000,
} as const;

export interface FeatureSet {
  compat: number;
  incompat: number;
  roCompat: number;
}

/** Feature names in the order dumpe2fs prints them: compat, incompat, ro_compat, each by bit. */
export function featureNames(f: FeatureSet): string[] {
  const out: string[] = [];
  const words: [Record<string, number>, number][] = [
    [COMPAT, f.compat],
    [INCOMPAT, f.incompat],
    [RO_COMPAT, f.roCompat],
  ];
  for (const [table, v] of words) {
    for (const [name, bit] of Object.entries(table).sort((a, b) => a[1] - b[1])) if (v & bit) out.push(name);
  }
  return out;
}

/** The default feature set of mkfs.ext4 (e2fsprogs 1.47, stock mke2fs.conf, fs type ext4). */
export const MKFS_EXT4_FEATURES: FeatureSet = {
  compat: COMPAT.has_journal | COMPAT.ext_attr | COMPAT.resize_inode | COMPAT.dir_index,
  incompat: INCOMPAT.filetype | INCOMPAT.extent | INCOMPAT['64bit'] | INCOMPAT.flex_bg,
  roCompat:
    RO_COMPAT.sparse_super |
    RO_COMPAT.large_file |
    RO_COMPAT.huge_file |
    RO_COMPAT.dir_nlink |
    RO_COMPAT.extra_isize |
    RO_COMPAT.metadata_csum,
};

/** Incompatible features the reader understands (anything else: UNSUPPORTED_FEATURE). */
export const READ_INCOMPAT =
  INCOMPAT.filetype |
  INCOMPAT.needs_recovery |
  INCOMPAT.meta_bg |
  INCOMPAT.extent |
  INCOMPAT['64bit'] |
  INCOMPAT.mmp |
  INCOMPAT.flex_bg |
  INCOMPAT.ea_inode |
  INCOMPAT.metadata_csum_seed |
  INCOMPAT.large_dir |
  INCOMPAT.inline_data |
  INCOMPAT.encrypt |
  INCOMPAT.casefold;

/**
 * Features the editor keeps consistent; an image with any other incompatible or read-only-compatible
 * feature is refused before anything is written (encrypt, casefold, bigalloc, quota, verity...).
 */
export const WRITE_INCOMPAT = READ_INCOMPAT & ~(INCOMPAT.encrypt | INCOMPAT.casefold);
export const WRITE_RO_COMPAT =
  RO_COMPAT.sparse_super |
  RO_COMPAT.large_file |
  RO_COMPAT.btree_dir |
  RO_COMPAT.huge_file |
  RO_COMPAT.gdt_csum |
  RO_COMPAT.dir_nlink |
  RO_COMPAT.extra_isize |
  RO_COMPAT.metadata_csum |
  RO_COMPAT.project |
  RO_COMPAT.orphan_present;
