/**
 * `copyIn`, like `cp -a` into the image: a tree source (a host path or any TreeSource, with an owner
 * and a spec laid over it) merged into a directory of the image, or one entry copied to a path; hard
 * links kept, space estimated before anything is written. A sink of the tree walk (tree/walk.ts),
 * which decides the depth limit, loops, hard links and unreadable entries.
 */
import { Ext4Error } from '../core/errors.js';
import { S_IFMT, S_IFDIR, S_IFREG, ROOT_INO } from '../ext4/inode.js';
import { fileTypeOfMode } from '../ext4/filetype.js';
import type { SourceNode, TreeSource } from '../core/types.js';
import { estimateTree, checkName as checkSourceName } from '../mkfs/estimate.js';
import { TreeWalk, sourcePolicy } from '../tree/walk.js';
import { hostPathSource } from '../tree/sources/host.js';
import type { Spec } from '../tree/sources/spec.js';
import { sourceWithMetadata } from '../tree/sources/overlay.js';
import { addEntry, removeEntry } from '../fs/dir-edit.js';
import { writeContent } from '../fs/content.js';
import { nodeSource } from './content.js';
import { linkNew, dropLink } from './ops-links.js';
import { makeDir, makeSymlink, makeNode, checkTarget } from './ops-dirs.js';
import { applyMeta } from './ops-meta.js';
import { normalize, parentOf, resolve, checkEditable, newEntryInode, type OpContext } from './op-context.js';

export interface CopyInOptions {
  /** Owner of every copied entry (and of an existing destination directory merged into). */
  owner?: { uid: number; gid: number };
  /**
   * Per-path metadata (an mtree spec, see `parseSpec`), paths relative to the copied tree's root (`.`
   * is the source itself): applied after `owner`, checked against the source before anything is
   * written. A spec's `time` sets mtime and atime; ctime is the edit's time, as for every copied entry.
   */
  spec?: Spec;
}

export interface CopyInResult {
  files: number;
  dirs: number;
  other: number;
  bytes: number;
}

export function copyIn(cx: OpContext, source: string | TreeSource, dest: string, opts: CopyInOptions): CopyInResult {
  const v = cx.v;
  // The owner goes onto the source's nodes first, so a spec's uid/gid can win over it (as mkfs does).
  const tree = sourceWithMetadata(typeof source === 'string' ? hostPathSource(source) : source, opts)!;
  const root = tree.root();
  const est = estimateTree(
    // A single file is estimated as the one entry of a directory that is not itself written.
    root.kind === 'dir' ? tree : { root: () => ({ ...root, kind: 'dir', children: () => [root], xattrs: () => [] }) },
    v.bs,
    v.inodeSize,
  );
  if (est.blocks > v.freeBlocks || est.inodes > v.freeInodes)
    throw new Ext4Error(
      'NO_SPACE',
      `the source needs about ${est.blocks} blocks and ${est.inodes} inodes; the image has ${v.freeBlocks} blocks and ${v.freeInodes} inodes free`,
    );
  const res: CopyInResult = { files: 0, dirs: 0, other: 0, bytes: 0 };
  const target = normalize(dest);
  if (root.kind !== 'dir') {
    // A single entry: into an existing directory, or at the path itself.
    let at = target;
    try {
      const { inode } = resolve(cx, target, true);
      if ((inode.mode & S_IFMT) === S_IFDIR)
        at = (target === '/' ? '' : target) + '/' + Buffer.from(root.name).toString('utf8');
    } catch (e) {
      if (!(e instanceof Ext4Error) || e.code !== 'NOT_FOUND') throw e;
    }
    const { parent, name } = parentOf(cx, at);
    copyLeaf(cx, parent, name, root, res);
    return res;
  }
  let dirIno: number;
  if (target === '/') dirIno = ROOT_INO;
  else {
    const { parent, name, display } = parentOf(cx, target);
    const slot = v.r.findEntry(parent, name);
    if (slot) {
      const { ino, inode } = resolve(cx, display, true);
      if ((inode.mode & S_IFMT) !== S_IFDIR)
        throw new Ext4Error('NOT_A_DIRECTORY', `${display} is not a directory`, { path: display });
      dirIno = ino;
    } else {
      dirIno = makeDir(cx, parent, name, { mode: root.perm, uid: root.uid, gid: root.gid });
      res.dirs++;
    }
  }
  // Directory handles and what further names of a hard-linked inode link to: inode numbers. Each entry
  // is a checkpoint once it is done (a directory: with everything below it).
  new TreeWalk<number, number>(
    {
      dir(n, parent) {
        checkSourceName(n);
        return copyDir(cx, parent, n, res);
      },
      leave(n, ino) {
        applyMeta(cx, ino, n);
        v.checkpoint();
      },
      leaf(n, parent) {
        checkSourceName(n);
        const ino = copyLeaf(cx, parent, n.name, n, res);
        v.checkpoint();
        return ino;
      },
      link(n, parent, first) {
        checkSourceName(n);
        linkTo(cx, parent, n, first);
        v.checkpoint();
      },
    },
    sourcePolicy(tree),
  ).entries(root, dirIno);
  applyMeta(cx, dirIno, root);
  return res;
}

/** What is at `name` in `parent` now, checked as something the copy may replace or merge into. */
function existingAt(cx: OpContext, parent: number, name: Uint8Array, node: SourceNode) {
  const v = cx.v;
  const slot = v.r.findEntry(parent, name);
  const existing = slot ? v.readInode(slot.inode) : undefined;
  const type = existing ? existing.mode & S_IFMT : 0;
  if (slot) checkEditable(slot.inode, existing!, node.displayPath);
  if (node.kind !== 'dir' && type === S_IFDIR)
    throw new Ext4Error('IS_A_DIRECTORY', `cannot overwrite directory with non-directory ${node.displayPath}`, {
      path: node.displayPath,
    });
  return { slot, type };
}

/** A directory of the source: merged into the one of its name, or made. Returns its inode number. */
function copyDir(cx: OpContext, parent: number, node: SourceNode, res: CopyInResult): number {
  const { slot, type } = existingAt(cx, parent, node.name, node);
  if (!slot) {
    res.dirs++;
    return makeDir(cx, parent, node.name, { mode: node.perm, uid: node.uid, gid: node.gid });
  }
  if (type !== S_IFDIR)
    throw new Ext4Error('NOT_A_DIRECTORY', `cannot overwrite non-directory with directory ${node.displayPath}`, {
      path: node.displayPath,
    });
  return slot.inode;
}

/** A further name of a hard-linked inode copied already as `linked`: replaces what has the name. */
function linkTo(cx: OpContext, parent: number, node: SourceNode, linked: number): void {
  const v = cx.v;
  const name = node.name;
  const { slot } = existingAt(cx, parent, name, node);
  if (slot) {
    if (slot.inode === linked) return;
    removeEntry(v, parent, name);
    dropLink(cx, slot.inode);
  }
  addEntry(v, parent, name, linked, fileTypeOfMode(v.readInode(linked).mode));
  const li = v.readInode(linked);
  li.linksCount++;
  v.writeInode(linked, li);
}

/** A non-directory at `name` in `parent`: a file's content replaces an existing file's, else a new inode. */
function copyLeaf(cx: OpContext, parent: number, name: Uint8Array, node: SourceNode, res: CopyInResult): number {
  const v = cx.v;
  const display = node.displayPath;
  const { slot, type } = existingAt(cx, parent, name, node);
  let ino: number;
  if (node.kind === 'file' && type === S_IFREG) {
    ino = slot!.inode;
    const i = v.readInode(ino);
    writeContent(v, ino, i, nodeSource(node));
    v.writeInode(ino, i);
  } else {
    if (slot) {
      removeEntry(v, parent, name);
      dropLink(cx, slot.inode);
    }
    const o = { mode: node.perm, uid: node.uid, gid: node.gid };
    if (node.kind === 'file') {
      const n = newEntryInode(cx, 'file', o, parent);
      ino = n.ino;
      v.initInode(ino, n.inode);
      writeContent(v, ino, n.inode, nodeSource(node));
      v.writeInode(ino, n.inode);
      linkNew(cx, parent, name, ino, n.inode.mode);
    } else if (node.kind === 'symlink') {
      const t = node.readLink();
      checkTarget(cx, t, display);
      ino = makeSymlink(cx, parent, name, t, o);
    } else
      ino = makeNode(
        cx,
        parent,
        name,
        node.kind,
        o,
        node.rdevMajor !== undefined ? [node.rdevMajor, node.rdevMinor ?? 0] : undefined,
      );
  }
  if (node.kind === 'file') {
    res.files++;
    res.bytes += node.size;
  } else res.other++;
  applyMeta(cx, ino, node);
  return ino;
}
