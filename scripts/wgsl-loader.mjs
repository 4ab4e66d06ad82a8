// Node module hooks: a `.wgsl` file loads as an ES module whose default export is its text.
// Registered after tsx's hooks, this load hook runs first and tsx never sees WGSL; registered
// before them, tsx passes `.wgsl` down the chain to it unchanged (both orders checked with tsx 4).
import { readFile } from 'node:fs/promises';

/** Loads `.wgsl` URLs as `export default "<source>"`; everything else goes down the chain. */
export async function load(url, context, nextLoad) {
  if (!new URL(url).pathname.endsWith('.wgsl')) return nextLoad(url, context);
  const text = await readFile(new URL(url), 'utf8');
  return { format: 'module', source: `export default ${JSON.stringify(text)};`, shortCircuit: true };
}
