/** Stable error codes. Tests and callers match on these, never on message text. */
export type Ext4ErrorCode =
  | 'BAD_SIZE'
  | 'TOO_SMALL'
  | 'TOO_LARGE'
  | 'BAD_OPTION'
  | 'BAD_UUID'
  | 'BAD_MAGIC'
  | 'BAD_CHECKSUM'
  | 'CORRUPT'
  | 'IO_ERROR'
  | 'NOT_FOUND'
  | 'NO_SPACE'
  | 'UNSUPPORTED_FEATURE'
  | 'SOURCE_ERROR'
  | 'SOURCE_CHANGED'
  | 'NAME_TOO_LONG'
  | 'USAGE'
  /** A path component that must be a directory is not one (ENOTDIR). */
  | 'NOT_A_DIRECTORY'
  /** A directory where something else is needed (EISDIR). */
  | 'IS_A_DIRECTORY'
  /** The name exists already (EEXIST). */
  | 'EXISTS'
  /** A directory that must be empty is not (ENOTEMPTY). */
  | 'NOT_EMPTY'
  /** An inode would pass the link count limit (EMLINK). */
  | 'TOO_MANY_LINKS'
  /** An operation that makes no sense on its arguments: moving a directory into itself, removing '/'. */
  | 'INVALID_ARGUMENT'
  /** The journal holds changes not yet applied (needs_recovery): recover the image first. */
  | 'NEEDS_RECOVERY'
  /** The image is mounted or in use by another program (or was not cleanly unmounted). */
  | 'IN_USE'
  /** The file system is marked as having errors, or has orphan inodes: check it first. */
  | 'NEEDS_CHECK'
  /** Done except for entries that could not be read, each named in a warning (extract). */
  | 'INCOMPLETE'
  /** The source is not what a metadata spec says of a path (its type, link target or size). */
  | 'SPEC_MISMATCH';

/** Context that locates an error on disk, where known. */
export interface Ext4ErrorContext {
  inode?: number;
  block?: number;
  group?: number;
  offset?: number;
  path?: string;
  cause?: unknown;
}

/** The one error class of the library: a stable `code`, a one-line message and optional location. */
export class Ext4Error extends Error {
  readonly code: Ext4ErrorCode;
  readonly context: Ext4ErrorContext;
  constructor(code: Ext4ErrorCode, message: string, context: Ext4ErrorContext = {}) {
    super(message, context.cause === undefined ? undefined : { cause: context.cause });
    this.name = 'Ext4Error';
    this.code = code;
    this.context = context;
  }
}
