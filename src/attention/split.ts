import { checkOneOf, optionNames } from '../validate.js';

/** `'auto'`: split-K when few queries face many keys; `'never'` / `'always'` force a path. */
export type Split = 'auto' | 'never' | 'always';

/** The decode-path option of the dense attention ops (`flashAttention`, `expressiveAttention`). */
export interface SplitOptions {
  /**
   * The kernel's decode path (Flash-Decoding): split the keys into chunks processed in
   * parallel, then merge. `'auto'` (default) splits when there are at most 8 queries, the
   * shape of token-by-token decoding over a cache; `'never'` and `'always'` force a path. The
   * result is the same either way, up to rounding; the reference ignores it. With `dropout` > 0
   * (training) the tiled path always runs.
   */
  split?: Split;
}

/** The option names of {@link SplitOptions}. */
export const SPLIT_OPTIONS = optionNames<SplitOptions>({ split: true });

const SPLITS: readonly Split[] = ['auto', 'never', 'always'];

/** `options.split`, checked, `'auto'` by default: the kernel attr of the same name. */
export function resolveSplit(op: string, options: SplitOptions): Split {
  return checkOneOf(op, 'split', options.split, SPLITS, 'auto');
}
