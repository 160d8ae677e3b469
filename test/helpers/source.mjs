// Hand-built tree-source nodes for cases neither a host directory nor memoryTreeSource can express.
// Plain JS so a child process with a small heap can load it (generated-tree.mjs builds on it).
const T = { sec: 1_700_000_000, nsec: 0 };

/** An empty regular file named "" owned by 0:0, with `p` laid over it. */
export function stubNode(p = {}) {
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
