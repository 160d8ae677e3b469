/**
 * The layer rules of src/ (README, "Layout of the code"), run by `npm run lint` inside `npm test`.
 * From the bottom up: core; ext4 (pure codecs) and io; host; fs; archive; tree; check; mkfs; edit;
 * resize; workdisk; cli and the library front on top. A layer imports only the layers listed for it, and
 * nothing forms a cycle.
 */
const layers = {
  core: [],
  ext4: ['core'],
  io: ['core'],
  host: ['core', 'io'],
  fs: ['core', 'ext4', 'io'],
  archive: ['core', 'ext4', 'host'],
  tree: ['core', 'ext4', 'io', 'host', 'fs', 'archive'],
  check: ['core', 'ext4', 'io', 'host', 'fs'],
  mkfs: ['core', 'ext4', 'io', 'host', 'fs', 'tree', 'check'],
  edit: ['core', 'ext4', 'io', 'host', 'fs', 'tree', 'check', 'mkfs'],
  resize: ['core', 'ext4', 'io', 'host', 'fs', 'check', 'edit'],
  workdisk: ['core', 'ext4', 'io', 'host', 'fs', 'archive', 'tree', 'check', 'mkfs', 'edit', 'resize'],
};
const names = Object.keys(layers);

module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } },
    ...names.map((layer) => ({
      name: `${layer}-imports-only-below`,
      comment: `src/${layer}/ may import ${layers[layer].length ? layers[layer].map((l) => `src/${l}/`).join(', ') : 'nothing of ours'} and itself`,
      severity: 'error',
      from: { path: `^src/${layer}/` },
      to: { path: '^src/', pathNot: `^src/(${[layer, ...layers[layer]].join('|')})/` },
    })),
    {
      name: 'no-upward-into-front',
      comment: 'the command line and the library front (src/cli/, src/index.ts) are imported by nobody',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/(cli/|cli\\.ts$|cli-loader\\.ts$|index\\.ts$)' },
      to: { path: '^src/(cli/|cli\\.ts$|index\\.ts$)' },
    },
  ],
  options: {
    tsPreCompilationDeps: true,
    doNotFollow: { path: 'node_modules' },
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
