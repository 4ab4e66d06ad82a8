/**
 * The mark of a copied line or block in the WGSL (a character WGSL itself never uses).
 */
const COPY_MARK = '$';
const BLOCK_OPEN = '// $ {';
const BLOCK_CLOSE = '// $ }';

/**
 * Writes out WGSL written once for `count` copies (an attention invocation's rows, the products
 * of a fused dense): each line that holds `$` once per copy, `$` replaced by the copy's number,
 * so `acc$[c] += p$.x * v0;` with 2 copies is `acc0[c] += p0.x * v0;` then `acc1[c] += p1.x * v0;`;
 * and each block between a line `// $ {` and a line `// $ }` whole, once per copy (a comment line
 * outside a block is kept once; blocks do not nest, and an unclosed one throws). The copies'
 * variables and bindings are so spelled out as separate names: SwiftShader makes an array
 * indexed at run time slow, a GPU keeps separate variables in registers, and WGSL cannot index
 * bindings.
 *
 * @example
 * ```ts
 * expandCopies('var w$: f32;\nlet x = 1;', 2);  // 'var w0: f32;\nvar w1: f32;\nlet x = 1;'
 * expandCopies('// $ {\nlet a$ = 1;\nlet b$ = a$;\n// $ }', 2);  // 'let a0 = 1;\nlet b0 = a0;\nlet a1 = 1;\nlet b1 = a1;'
 * ```
 */
export function expandCopies(code: string, count: number): string {
  const copies = (lines: string[]) => Array.from({ length: count }, (_, c) => lines.map((line) => line.replaceAll(COPY_MARK, String(c)))).flat();
  const out: string[] = [];
  let block: string[] | null = null;
  for (const line of code.split('\n')) {
    const mark = line.trim();
    if (mark === BLOCK_OPEN || mark === BLOCK_CLOSE) {
      // a block inside a block, or a close without an open, would silently drop or misplace lines
      if ((mark === BLOCK_OPEN) !== (block === null)) throw new Error(`expandCopies: '${mark}' where ${block ? 'a block is open' : 'no block is open'}.`);
      if (block) out.push(...copies(block));
      block = mark === BLOCK_OPEN ? [] : null;
    } else if (block) {
      block.push(line);
    } else {
      // a comment that names the copies (`$`) is said once
      out.push(...line.includes(COPY_MARK) && !mark.startsWith('//') ? copies([line]) : [line]);
    }
  }
  if (block) throw new Error(`expandCopies: a block opened with '${BLOCK_OPEN}' is never closed.`);
  return out.join('\n');
}
