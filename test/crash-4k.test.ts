/**
 * Crash safety with 4096-byte blocks (see helpers/crash.ts): a batch killed after every write and
 * fsync, recovered by us, by e2fsck and by the kernel, is clean and holds the old or the new state.
 */
import { crashSuite } from './helpers/crash.js';

crashSuite(4096);
