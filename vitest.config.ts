import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Oracle suites run e2fsck/mkfs.ext4 and loop mounts; two workers match the machine's two cores.
    pool: 'forks',
    maxWorkers: 2,
  },
});
