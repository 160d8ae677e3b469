/**
 * Runs a shell script inside a small Linux guest under QEMU, with image files attached as virtio
 * disks (/dev/vda, /dev/vdb, ... in the order given): for the kernel checks a container cannot do on
 * its host, such as the online resize that needs CAP_SYS_RESOURCE. What the guest boots is built by
 * ./guest-initrd.ts; this module picks KVM or TCG, runs QEMU with a timeout (a hung guest never hangs
 * the suite) and reads the script's exit status from the serial console.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MARKER, buildInitrd, guestKernel, staticBusybox, unpackKernel } from './guest-initrd.js';
export { guestDisk } from './guest-initrd.js';
import { haveTool } from './oracle.js';

export const QEMU = 'qemu-system-x86_64';

/** Why no guest can run here (naming the package .ci/run installs), or null when one can. */
export function guestMissing(): string | null {
  if (!haveTool(QEMU)) return `${QEMU} missing (package qemu-system-x86)`;
  if (guestKernel() === null) return 'no /boot/vmlinuz-* with its /lib/modules (package linux-image-amd64)';
  if (staticBusybox() === null) return 'no statically linked busybox (package busybox-static)';
  return null;
}

export type Accel = 'kvm' | 'tcg';

export interface GuestResult {
  /** The script's exit status, or null when the guest never got to print it (crash, timeout). */
  status: number | null;
  /** Everything on the guest's serial console (kernel messages, the script's output and trace). */
  output: string;
  accel: Accel;
  /** Why TCG where it is TCG. */
  accelWhy: string;
  /** From starting QEMU until it exited: the boot, the script and the power-off. */
  ms: number;
  timedOut: boolean;
}

export interface GuestOptions {
  /** Image files attached read-write as raw virtio disks, /dev/vda first. */
  disks?: string[];
  /** Host programs the script runs (e.g. resize2fs), copied in with their libraries; on the guest's PATH. */
  tools?: string[];
  timeoutMs?: number;
}

function boot(accel: Accel, kernel: string, initrd: string, disks: string[], timeoutMs: number) {
  const args = [
    ...['-accel', accel, '-cpu', accel === 'kvm' ? 'host' : 'max', '-smp', '1', '-m', '256M'],
    ...['-nodefaults', '-no-user-config', '-display', 'none', '-serial', 'stdio', '-no-reboot'],
    ...['-kernel', kernel, '-initrd', initrd],
    // panic=-1: a guest whose /init dies reboots at once, which -no-reboot turns into QEMU exiting.
    ...['-append', 'console=ttyS0 quiet panic=-1 rdinit=/init i8042.noaux i8042.nokbd'],
    ...disks.flatMap((d) => ['-drive', `file=${d},format=raw,if=virtio`]),
  ];
  const t0 = Date.now();
  const r = spawnSync(QEMU, args, {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
    maxBuffer: 64 * 1024 * 1024,
  });
  const output = (r.stdout ?? '') + (r.stderr ?? '');
  const m = new RegExp(`^${MARKER} (\\d+)\\r?$`, 'm').exec(output);
  const timedOut = r.error !== undefined && 'code' in r.error && r.error.code === 'ETIMEDOUT';
  return { status: m ? Number(m[1]) : null, output, ms: Date.now() - t0, timedOut };
}

const PROBE_MS = 20_000;
let chosen: { accel: Accel; why: string } | undefined;

/**
 * KVM when it boots this kernel, else TCG. /dev/kvm opening is not enough: a host that is itself a VM
 * may offer PVM's KVM, which runs only kernels built for it (a stock kernel hangs at its first
 * instruction), or refuse the CPU model. So, once per process, a probe boot with nothing to do, cut
 * off after PROBE_MS; PVM alone (no kvm_intel or kvm_amd loaded) is known without it.
 * `EXT4WD_GUEST_ACCEL=tcg` forces TCG (to time it).
 */
function pickAccel(kernel: string, dir: string): { accel: Accel; why: string } {
  if (process.env.EXT4WD_GUEST_ACCEL === 'tcg') return { accel: 'tcg', why: 'EXT4WD_GUEST_ACCEL=tcg' };
  if (chosen) return chosen;
  const module = (m: string) => fs.existsSync(path.join('/sys/module', m));
  try {
    fs.closeSync(fs.openSync('/dev/kvm', 'r+'));
  } catch (e) {
    return (chosen = { accel: 'tcg', why: `/dev/kvm does not open (${(e as NodeJS.ErrnoException).code})` });
  }
  if (module('kvm_pvm') && !module('kvm_intel') && !module('kvm_amd'))
    return (chosen = { accel: 'tcg', why: "the host's KVM is PVM, which runs only guest kernels built for it" });
  const initrd = path.join(dir, 'probe.cpio');
  buildInitrd(initrd, guestKernel()!, 'true\n', 0, []);
  const r = boot('kvm', kernel, initrd, [], PROBE_MS);
  fs.rmSync(initrd);
  if (r.status === 0) return (chosen = { accel: 'kvm', why: '' });
  const said = r.output.trim().split('\n').slice(-2).join(' / ');
  const how = r.timedOut ? `did not finish within ${PROBE_MS / 1000} s` : 'failed';
  return (chosen = { accel: 'tcg', why: `a KVM probe boot ${how} (${said})` });
}

/**
 * Boots a guest that runs `script` with `sh -ex` and returns its exit status and console output.
 * Throws when no guest can run here (see guestMissing).
 */
export function runInGuest(script: string, opts: GuestOptions = {}): GuestResult {
  const missing = guestMissing();
  if (missing !== null) throw new Error(`guest: ${missing}`);
  const kernel = guestKernel()!;
  const disks = opts.disks ?? [];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ext4wd-guest-'));
  try {
    const elf = path.join(dir, 'vmlinux');
    const image = unpackKernel(kernel.vmlinuz, elf) ? elf : kernel.vmlinuz;
    const initrd = path.join(dir, 'initrd.cpio');
    buildInitrd(initrd, kernel, script, disks.length, opts.tools ?? []);
    const { accel, why } = pickAccel(image, dir);
    return { ...boot(accel, image, initrd, disks, opts.timeoutMs ?? 300_000), accel, accelWhy: why };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
