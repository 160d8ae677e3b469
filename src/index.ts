/** ext4-workdisk: the public API. */
export { Ext4Error, type Ext4ErrorCode, type Ext4ErrorContext } from './core/errors.js';
export {
  formatImage,
  writeAtomically,
  autoSize,
  parseSizeSlack,
  type FormatImageOptions,
  type SizeSlack,
} from './mkfs/image.js';
export { formatDevice, resolveTimestamp, type FormatOptions, type FormatResult } from './mkfs/format.js';
export {
  planLayout,
  parseSize,
  sizeTypeFor,
  defaultJournalBlocks,
  type Layout,
  type LayoutOptions,
  type SizeType,
} from './ext4/layout.js';
export { readInfo, readImageInfo, formatInfo, type ImageInfo, type JournalInfo } from './check/info.js';
export { FileDevice, MemoryDevice, BufferDevice, type BlockDevice } from './io/device.js';
export { crc32c } from './core/crc32c.js';
export { workSeedPath, workSeedSizeBytes } from './workdisk/paths.js';
export { hostDirectorySource, type HostSourceOptions } from './tree/sources/host.js';
export { parseXattrDump, readXattrDump } from './tree/sources/xattr-dump.js';
export { tarTreeSource, TarTree, type TarSource, type TarSourceOptions } from './tree/sources/tar.js';
export { containerTreeSource, type ContainerSource, type ContainerSourceOptions } from './tree/sources/oci.js';
export { openTreeSource, isExt4Image, type OpenSourceOptions, type OpenedSource } from './tree/sources/open.js';
export { readTar, type TarEntry, type ByteSource } from './archive/read.js';
export { parseSpec, readSpec, unvis, type Spec, type SpecEntry } from './tree/sources/spec.js';
export { checkSpec, applySpec, type SpecApplyOptions } from './tree/sources/overlay.js';
export type { TreeSource, SourceNode, FileData, NodeKind, XattrEntry } from './core/types.js';
export type { Owner } from './mkfs/writer.js';
export { estimateTree, type TreeEstimate } from './mkfs/estimate.js';
export { halfMd4Hash, dirHash } from './ext4/dirhash.js';
export { Ext4Reader, type ReaderOptions } from './fs/reader.js';
export type { DirEntryInfo } from './fs/dir.js';
export type { BlockRun } from './fs/blockmap.js';
export { fileTypeOf, type FileType } from './ext4/filetype.js';
export { imageTreeSource, type ImageSourceOptions } from './tree/sources/image.js';
export { extract, type ExtractOptions, type ExtractResult } from './tree/extract.js';
export { exportTar, type TarExportOptions, type TarExportResult, type TarOutput } from './tree/tar-export.js';
export {
  buildWorkSeedImage,
  materializeWorkDisk,
  readNormalizedLines,
  copyFilePreferClone,
  type JobOptions,
  type SeedResult,
  type MaterializeResult,
  type Stage,
} from './workdisk/job.js';
export { memoryTreeSource, type MemoryEntry } from './tree/sources/memory.js';
export {
  Ext4Editor,
  editImage,
  type EditorOptions,
  type NewEntryOptions,
  type WriteFileOptions,
  type FileContent,
  type CopyInOptions,
  type CopyInResult,
} from './edit/editor.js';
export { mkdirExt4, writeExt4FileOwned } from './edit/toolkit.js';
export { recoverJournal, type RecoverOptions, type RecoverResult } from './edit/recover.js';
export { tuneImage, type TuneChanges, type TuneOptions, type TuneResult } from './edit/tune.js';
export {
  repairImage,
  type RepairMode,
  type RepairOptions,
  type RepairResult,
  type RepairStatus,
} from './edit/repair-all.js';
export { resizeImage, type ResizeOptions, type ResizeResult } from './resize/image.js';
export { lockForWrite, lockForRead, type LockOptions, type ImageLock } from './host/lock.js';
export type { Holder } from './host/holder.js';
export {
  checkImage,
  checkDevice,
  type CheckResult,
  type CheckOptions,
  type Problem,
  type ProblemCode,
} from './check/check.js';
