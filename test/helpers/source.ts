/** Hand-built tree-source nodes for cases neither a host directory nor memoryTreeSource can express. */
import type { SourceNode } from '../../src/core/types.js';

const T = { sec: 1_700_000_000, nsec: 0 };

/** An empty regular file named "" owned by 0:0, with `p` laid over it. */
export function stubNode(p: Partial<SourceNode> = {}): SourceNode {
  return {
    name: new Uint8Array(0),
    displayPath: '/',
    kind: 'file',
    perm: 0o644,
    uid: 0,
    gid: 0,
    atime: T,
    mtime: T,
    ctime: T,
    size: 0,
    xattrs: () => [],
    readLink: () => new Uint8Array(0),
    openData: () => ({ read: () => 0, verifyUnchanged: () => {}, close: () => {} }),
    children: () => [],
    ...p,
  };
}
