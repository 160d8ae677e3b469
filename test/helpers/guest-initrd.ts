/**
 * What the QEMU guest of ./guest.ts boots: the host's Debian kernel (/boot/vmlinuz-*, unpacked to its
 * ELF so QEMU starts it through its PVH entry, skipping the firmware's real-mode path and the
 * decompressor, seconds under TCG) and an initramfs built per boot, holding busybox-static, the
 * modules the kernel needs for virtio disks and ext4, the host tools asked for with the libraries
 * `ldd` lists, the caller's script, and an /init that runs it and powers off.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { newcArchive, type CpioEntry } from './cpio.js';
import { run } from './oracle.js';

/**
 * What the guest's kernel needs and the Debian kernel builds as modules: virtio_pci finds the disks,
 * virtio_blk makes them block devices, ext4 (with jbd2, mbcache, crc16 from modules.dep) mounts them,
 * and crc32c_generic gives metadata_csum and the journal their checksum (the kernel would ask a
 * modprobe for it, which the guest does not run).
 */
export const GUEST_MODULES = ['crc32c_generic', 'virtio_pci', 'virtio_blk', 'ext4'];

/** The line /init prints after the script, with its exit status. */
export const MARKER = 'EXT4WD-GUEST-EXIT';

export interface GuestKernel {
  vmlinuz: string;
  modules: string;
}

/** The newest /boot/vmlinuz-VER that has /lib/modules/VER, or null. */
export function guestKernel(): GuestKernel | null {
  let names: string[];
  try {
    names = fs.readdirSync('/boot');
  } catch {
    return null;
  }
  const found = names
    .filter((n) => n.startsWith('vmlinuz-'))
    .map((n) => n.slice('vmlinuz-'.length))
    .filter((v) => fs.existsSync(path.join('/lib/modules', v, 'modules.dep')))
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const v = found.at(-1);
  return v === undefined
    ? null
    : { vmlinuz: path.join('/boot', `vmlinuz-${v}`), modules: path.join('/lib/modules', v) };
}

/** A statically linked busybox, or null (a dynamic one would need its libraries in the guest too). */
export function staticBusybox(): string | null {
  for (const p of ['/bin/busybox', '/usr/bin/busybox']) {
    if (!fs.existsSync(p)) continue;
    const r = run('ldd', [p]);
    if (/not a dynamic executable|statically linked/.test(r.stdout + r.stderr)) return p;
  }
  return null;
}

/** The modules `names` need from modules.dep, each after what it depends on, as modules.dep names them. */
export function moduleOrder(modulesDep: string, names: string[]): string[] {
  const deps = new Map<string, string[]>();
  const byName = new Map<string, string>();
  for (const line of modulesDep.split('\n')) {
    const m = /^([^:]+):\s*(.*)$/.exec(line);
    if (!m) continue;
    deps.set(m[1]!, m[2]!.split(/\s+/).filter(Boolean));
    byName.set(
      path
        .basename(m[1]!)
        .replace(/\.ko(\.\w+)?$/, '')
        .replace(/-/g, '_'),
      m[1]!,
    );
  }
  const out: string[] = [];
  const visit = (mod: string) => {
    if (out.includes(mod)) return;
    for (const d of deps.get(mod) ?? []) visit(d);
    out.push(mod);
  };
  for (const n of names) {
    const mod = byName.get(n.replace(/-/g, '_'));
    if (mod === undefined) throw new Error(`guest: module ${n} not in modules.dep`);
    visit(mod);
  }
  return out;
}

/** A module's bytes, uncompressed (busybox's insmod takes plain ELF). */
function moduleBytes(file: string): Buffer {
  const raw = fs.readFileSync(file);
  if (file.endsWith('.ko')) return raw;
  if (file.endsWith('.gz')) return gunzipSync(raw);
  const tool = file.endsWith('.xz') ? 'xz' : file.endsWith('.zst') ? 'zstd' : null;
  if (tool === null) throw new Error(`guest: unknown module compression: ${file}`);
  const r = spawnSync(tool, ['-dc', file], { maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`guest: ${tool} -dc ${file} failed`);
  return r.stdout;
}

/** A host tool and the shared libraries (and loader) `ldd` lists for it, at their host paths. */
function toolEntries(tool: string): CpioEntry[] {
  const where = run('sh', ['-c', `command -v ${tool}`]).stdout.trim();
  if (!where.startsWith('/')) throw new Error(`guest: tool ${tool} not found on the host`);
  const out: CpioEntry[] = [{ path: `/opt/bin/${tool}`, kind: 'file', data: fs.readFileSync(where), mode: 0o755 }];
  for (const line of run('ldd', [where]).stdout.split('\n')) {
    const lib = /=>\s*(\/\S+)/.exec(line)?.[1] ?? /^\s*(\/\S+)\s+\(/.exec(line)?.[1];
    if (lib !== undefined) out.push({ path: lib, kind: 'file', data: fs.readFileSync(lib), mode: 0o755 });
  }
  return out;
}

/**
 * The kernel's ELF image out of the bzImage at `vmlinuz`, written to `out`: the compressed payload
 * found by its magic and unpacked by the matching tool (xz-utils, gzip and zstd come with Debian).
 * False where none unpacks to an ELF; the caller then boots the bzImage itself, only slower.
 */
export function unpackKernel(vmlinuz: string, out: string): boolean {
  const image = fs.readFileSync(vmlinuz);
  const formats: [Buffer, string][] = [
    [Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), 'xz'],
    [Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), 'zstd'],
    [Buffer.from([0x1f, 0x8b, 0x08]), 'gzip'],
  ];
  for (const [magic, tool] of formats) {
    const at = image.indexOf(magic);
    if (at < 0) continue;
    // The payload is followed by the rest of the bzImage, which the tools report as trailing garbage
    // (a non-zero exit): what counts is that an ELF came out before it.
    const r = spawnSync(tool, ['-dc'], { input: image.subarray(at), maxBuffer: 512 * 1024 * 1024 });
    const elf = r.stdout as Buffer | null;
    if (elf && elf.length > 1 << 20 && elf.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) {
      fs.writeFileSync(out, elf);
      return true;
    }
  }
  return false;
}

/** The device the `i`-th disk (from 0) is in the guest: virtio disks are named in the order attached. */
export function guestDisk(i: number): string {
  return `/dev/vd${String.fromCharCode(97 + i)}`;
}

function initScript(modules: string[], disks: number): string {
  const devs = Array.from({ length: disks }, (_, i) => guestDisk(i));
  return `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /mnt
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
export PATH=/opt/bin:/bin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
ln -sf /proc/self/mounts /etc/mtab
for m in ${modules.join(' ')}; do insmod /modules/$m || echo "insmod $m failed"; done
for d in ${devs.join(' ')}; do
  n=0; while [ ! -b $d ] && [ $n -lt 200 ]; do sleep 0.05; n=$((n+1)); done
done
sh -ex /script
echo "${MARKER} $?"
sync
poweroff -f
`;
}

/**
 * Writes to `out` the initramfs that runs `script` with `sh -ex` (a failing command ends it, the trace
 * shows which) once `disks` virtio disks are there, with `tools` on its PATH.
 */
export function buildInitrd(out: string, kernel: GuestKernel, script: string, disks: number, tools: string[]): void {
  const busybox = staticBusybox();
  if (busybox === null) throw new Error('guest: no statically linked busybox');
  const modules = moduleOrder(fs.readFileSync(path.join(kernel.modules, 'modules.dep'), 'utf8'), GUEST_MODULES);
  const names = modules.map((m) => path.basename(m).replace(/\.ko\.\w+$/, '.ko'));
  const entries: CpioEntry[] = [
    { path: '/bin/busybox', kind: 'file', data: fs.readFileSync(busybox), mode: 0o755 },
    { path: '/init', kind: 'file', data: Buffer.from(initScript(names, disks)), mode: 0o755 },
    { path: '/script', kind: 'file', data: Buffer.from(script), mode: 0o755 },
    { path: '/etc', kind: 'dir' },
    ...modules.map((m, i): CpioEntry => ({
      path: `/modules/${names[i]!}`,
      kind: 'file',
      data: moduleBytes(path.join(kernel.modules, m)),
    })),
  ];
  const seen = new Set(entries.map((e) => e.path));
  for (const tool of tools)
    for (const e of toolEntries(tool)) {
      if (seen.has(e.path)) continue;
      seen.add(e.path);
      entries.push(e);
    }
  fs.writeFileSync(out, newcArchive(entries));
}
