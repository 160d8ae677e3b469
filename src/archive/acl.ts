/**
 * POSIX ACLs in their text form (`user::rw-,user:1000:r--,group::r--,mask::r--,other::r--`, what star
 * and GNU tar record as `SCHILY.acl.access` / `SCHILY.acl.default`) to the binary value of the
 * `system.posix_acl_*` attributes (version 2: a 4-byte header, then 8-byte entries of tag, permissions
 * and id, ordered by tag and id as the kernel requires).
 */
import { Ext4Error } from '../core/errors.js';
import { ACL_GROUP, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER, ACL_USER, ACL_USER_OBJ } from '../ext4/xattr.js';

const TAGS: Record<string, number> = {
  user: ACL_USER_OBJ, // ACL_USER with a qualifier
  group: ACL_GROUP_OBJ, // ACL_GROUP with one
  mask: ACL_MASK,
  other: ACL_OTHER,
};
const SHORT: Record<string, string> = { u: 'user', g: 'group', m: 'mask', o: 'other' };
const NO_ID = 0xffffffff;

/** The binary ACL for a text ACL; numeric qualifiers only (a name cannot be resolved for an image). */
export function aclFromText(text: string, where: string): Uint8Array {
  const entries: { tag: number; perm: number; id: number }[] = [];
  for (const raw of text.split(/[,\n]/)) {
    const item = raw.replace(/#.*$/, '').trim();
    if (!item) continue;
    const f = item.split(':');
    const tagName = SHORT[f[0]!] ?? f[0]!;
    const base = TAGS[tagName];
    if (base === undefined || f.length < 3 || f.length > 4)
      throw new Ext4Error('SOURCE_ERROR', `${where}: unreadable ACL entry "${item}"`);
    const q = f[1]!;
    const permText = f[2]!;
    if (!/^[rwx-]{1,3}$/.test(permText) && !/^[0-7]$/.test(permText))
      throw new Ext4Error('SOURCE_ERROR', `${where}: unreadable ACL permissions in "${item}"`);
    const perm = /^[0-7]$/.test(permText)
      ? Number(permText)
      : (permText.includes('r') ? 4 : 0) | (permText.includes('w') ? 2 : 0) | (permText.includes('x') ? 1 : 0);
    let tag = base;
    let id = NO_ID;
    if (q !== '') {
      if (tagName !== 'user' && tagName !== 'group')
        throw new Ext4Error('SOURCE_ERROR', `${where}: ACL entry "${item}" cannot name a user or group`);
      if (!/^\d+$/.test(q))
        throw new Ext4Error(
          'SOURCE_ERROR',
          `${where}: ACL entry "${item}" names ${tagName} "${q}" by name; an image needs numeric ids (archive it with the ACL's binary attribute, e.g. GNU tar --xattrs)`,
        );
      tag = base === ACL_USER_OBJ ? ACL_USER : ACL_GROUP;
      id = Number(q);
    }
    entries.push({ tag, perm, id });
  }
  entries.sort((a, b) => a.tag - b.tag || a.id - b.id);
  const out = new Uint8Array(4 + 8 * entries.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, 2, true);
  entries.forEach((e, i) => {
    dv.setUint16(4 + 8 * i, e.tag, true);
    dv.setUint16(6 + 8 * i, e.perm, true);
    dv.setUint32(8 + 8 * i, e.id, true);
  });
  return out;
}

/** A POSIX ACL in the xattr format (version 2) as text, numeric ids; undefined when it is not one. */
export function aclToText(v: Uint8Array): string | undefined {
  if (v.length < 4 || (v.length - 4) % 8 !== 0) return undefined;
  const dv = new DataView(v.buffer, v.byteOffset, v.length);
  if (dv.getUint32(0, true) !== 2) return undefined;
  const lines: string[] = [];
  for (let o = 4; o < v.length; o += 8) {
    const tag = dv.getUint16(o, true);
    const perm = dv.getUint16(o + 2, true);
    const id = dv.getUint32(o + 4, true);
    const p = `${perm & 4 ? 'r' : '-'}${perm & 2 ? 'w' : '-'}${perm & 1 ? 'x' : '-'}`;
    const kind =
      tag === ACL_USER_OBJ
        ? 'user:'
        : tag === ACL_USER
          ? `user:${id}`
          : tag === ACL_GROUP_OBJ
            ? 'group:'
            : tag === ACL_GROUP
              ? `group:${id}`
              : tag === ACL_MASK
                ? 'mask:'
                : tag === ACL_OTHER
                  ? 'other:'
                  : undefined;
    if (kind === undefined) return undefined;
    lines.push(`${kind}:${p}\n`);
  }
  return lines.join('');
}
