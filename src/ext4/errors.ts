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
  | 'USAGE';

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
