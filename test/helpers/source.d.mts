import type { SourceNode } from '../../src/core/types.js';

/** An empty regular file named "" owned by 0:0, with `p` laid over it. */
export function stubNode(p?: Partial<SourceNode>): SourceNode;
