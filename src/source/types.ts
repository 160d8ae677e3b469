/**
 * Tree sources: what the writer consumes. The types live in core/ (the writer and the codecs below
 * this layer need them); they are named here too for the modules that have always imported them here.
 */
export type { FileData, NodeKind, SourceNode, TreeSource, XattrEntry } from '../core/types.js';
